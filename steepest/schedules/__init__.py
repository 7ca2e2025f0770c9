"""Learning-rate (and any hyperparameter) schedules as pure functions of the step.

Every registered schedule is a frozen dataclass: `schedule(step)` is a multiplier of each param
group's base value, so a run resumes from its step alone. Build one by name with
`build_schedule(name, total_steps, **kwargs)` (step counts may be given as fractions of training);
apply it with `apply(schedule, optimizer, step, key)`, key "lr", "momentum", "weight_decay", "beta1"...
Reduce-on-plateau is metric-driven, so it is the small stateful `ReduceOnPlateau`.
"""

from steepest.schedules._registry import SCHEDULES
from steepest.schedules.base import Schedule, apply, apply_beta1, build_schedule, linear_scaling_lr
from steepest.schedules.combine import Join, by_fraction
from steepest.schedules.interop import Tabulated, from_torch, to_torch
from steepest.schedules.plateau import ReduceOnPlateau

__all__ = [
    "SCHEDULES",
    "Join",
    "ReduceOnPlateau",
    "Schedule",
    "Tabulated",
    "apply",
    "apply_beta1",
    "build_schedule",
    "by_fraction",
    "from_torch",
    "linear_scaling_lr",
    "to_torch",
]
