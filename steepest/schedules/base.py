"""What every schedule is, and how the Trainer applies one.

A schedule is a frozen dataclass whose `__call__(step)` returns a multiplier of each parameter
group's base value (its `initial_<key>`). It holds no state, so resuming a run only needs the step.
Fields named `total_steps` are filled in by `build_schedule` from the Trainer's step budget.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch

from steepest.errors import ConfigError
from steepest.schedules._registry import SCHEDULES


class Schedule(Protocol):
    def __call__(self, step: int) -> float: ...


def build_schedule(name: str, total_steps: int, **kwargs: Any) -> Schedule:
    """Build a registered schedule; `total_steps` is passed when the schedule has that field."""
    record = SCHEDULES.get(name, "schedule.name")
    cls = record.target
    args = {**record.defaults, **kwargs}
    if dataclasses.is_dataclass(cls) and "total_steps" in {f.name for f in dataclasses.fields(cls)}:
        args.setdefault("total_steps", total_steps)
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"schedule ({name}): {exc}") from None


def apply(schedule: Schedule, optimizer: torch.optim.Optimizer, step: int, key: str = "lr") -> float:
    """Write `initial_<key> * schedule(step)` into every param group; return the multiplier."""
    factor = float(schedule(step))
    base = "initial_" + key
    for group in optimizer.param_groups:
        if base not in group:
            group[base] = group[key]
        group[key] = group[base] * factor
    return factor
