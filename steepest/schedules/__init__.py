"""Learning-rate (and any hyperparameter) schedules as pure functions of the step."""

from steepest.schedules import basic  # noqa: F401  (registers the schedules)
from steepest.schedules._registry import SCHEDULES
from steepest.schedules.base import Schedule, apply, build_schedule

__all__ = ["SCHEDULES", "Schedule", "apply", "build_schedule"]
