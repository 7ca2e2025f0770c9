"""What every schedule is, and how the Trainer applies one.

A schedule is a frozen dataclass whose `__call__(step)` returns a multiplier of each parameter
group's base value (its `initial_<key>`). It holds no state, so resuming a run only needs the step.
Fields named `total_steps` are filled in by `build_schedule` from the Trainer's step budget.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from steepest.errors import ConfigError
from steepest.registry import accepted_arguments
from steepest.schedules._registry import SCHEDULES


class Schedule(Protocol):
    def __call__(self, step: int) -> float: ...


def build_schedule(name: str, total_steps: int, **kwargs: Any) -> Schedule:
    """Build a registered schedule; `total_steps` is passed when the schedule has that field."""
    record = SCHEDULES.get(name, "schedule.name")
    cls = record.target
    args = {**record.defaults, **kwargs}
    if "total_steps" in accepted_arguments(cls)[0]:
        args.setdefault("total_steps", total_steps)
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"schedule ({name}): {exc}") from None


def apply(schedule: Schedule, optimizer: torch.optim.Optimizer, step: int, key: str = "lr") -> float:
    """Write `initial_<key> * schedule(step)` into every param group; return the multiplier.

    `key` is any group hyperparameter ("lr", "momentum", "weight_decay", ...) or "beta1", the first
    entry of Adam-style `betas`.
    """
    factor = float(schedule(step))
    base = "initial_" + key
    for group in optimizer.param_groups:
        if key == "beta1":
            if base not in group:
                group[base] = group["betas"][0]
            group["betas"] = (group[base] * factor, *tuple(group["betas"])[1:])
            continue
        if key not in group:
            raise KeyError(f"the optimizer has no '{key}' hyperparameter to schedule")
        if base not in group:
            group[base] = group[key]
        group[key] = group[base] * factor
    return factor
