"""The schedule registry: recipe name -> frozen dataclass (a pure function step -> multiplier).

Rows name their class by import path (resolved on first use), so every name is known without
importing the module that defines it."""

from __future__ import annotations

from steepest.registry import Registry

SCHEDULES = Registry("schedule")

R = SCHEDULES.register
R("constant", "steepest.schedules.basic:Constant")
R("cosine", "steepest.schedules.basic:Cosine")
R("warmup_cosine", "steepest.schedules.basic:WarmupCosine")
R("onecycle", "steepest.schedules.cyclic:OneCycle")
R("onecycle_momentum", "steepest.schedules.cyclic:OneCycleMomentum")
R("cyclic", "steepest.schedules.cyclic:Cyclic", defaults={"step_size_up": 0.1})
R("cyclic_momentum", "steepest.schedules.cyclic:CyclicMomentum", defaults={"step_size_up": 0.1})
R("step", "steepest.schedules.decay:Step", defaults={"step_size": 1 / 3})
R("multistep", "steepest.schedules.decay:MultiStep", defaults={"milestones": (0.5, 0.75)})
R("exponential", "steepest.schedules.decay:Exponential")
R("polynomial", "steepest.schedules.decay:Polynomial")
R("cosine_restarts", "steepest.schedules.decay:CosineRestarts", defaults={"t0": 0.25})
R("warmup", "steepest.schedules.decay:Warmup")
R("inverse_sqrt", "steepest.schedules.decay:InverseSqrt", defaults={"warmup_steps": 0.05})
R("wsd", "steepest.schedules.decay:WarmupStableDecay")
R("join", "steepest.schedules.combine:join")
