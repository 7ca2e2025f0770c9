"""Learning-rate (and any hyperparameter) schedules as pure functions of the step.

Every registered schedule is a frozen dataclass: `schedule(step)` is a multiplier of each param
group's base value, so a run resumes from its step alone. Build one by name with
`build_schedule(name, total_steps, **kwargs)`; apply with `apply(schedule, optimizer, step, key)`.
"""

from steepest.schedules import basic, cyclic, decay  # noqa: F401  (registers the schedules)
from steepest.schedules._registry import SCHEDULES
from steepest.schedules.base import Schedule, apply, build_schedule
from steepest.schedules.combine import (
           Join,
           Tabulated,
           by_fraction,
           from_torch,
           linear_scaling_lr,
           to_torch,
)
from steepest.schedules.plateau import ReduceOnPlateau

__all__ = ["SCHEDULES", "Join", "ReduceOnPlateau", "Schedule", "Tabulated", "apply", "build_schedule", "by_fraction",
           "from_torch", "linear_scaling_lr", "to_torch"]
