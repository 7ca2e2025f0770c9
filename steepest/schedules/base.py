"""What every schedule is, how one is built from a recipe, and how the Trainer applies one.

A schedule is a frozen dataclass whose `__call__(step)` returns a multiplier of each parameter
group's base value (its `initial_<key>`, recorded the first time the key is scheduled, as
torch.optim.lr_scheduler does for "initial_lr"). It holds no state, so resuming a run only needs the
step, and `dataclasses.asdict(schedule)` is its config.

Step counts given as fractions of training. Fields declared with `steps()` (step_size, milestones,
t0, warmup_steps, step_size_up, ...) accept, through `build_schedule`, a float in (0, 1) meaning that
fraction of `total_steps`; any other value must be a whole number of steps. Fields named
`total_steps` are filled from the Trainer's step budget. So every registered schedule builds from the
step budget alone:

    >>> s = build_schedule("multistep", 100, milestones=[0.5, 0.75])
    >>> s.milestones, s(49), s(50), round(s(75), 6)
    ((50, 75), 1.0, 0.1, 0.01)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import torch

from steepest.errors import ConfigError
from steepest.registry import accepted_arguments
from steepest.schedules._registry import SCHEDULES


class Schedule(Protocol):
    def __call__(self, step: int) -> float: ...


StepCount = int | float
"""A step count; in a recipe also a fraction of training in (0, 1). Always an int once built."""


def steps(default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field holding a step count (or a tuple of them); `build_schedule` resolves
    fractions of training into steps for it."""
    return dataclasses.field(default=default, metadata={"steps": True})


def resolve_steps(value: Any, total_steps: int, name: str) -> Any:
    """A float in (0, 1) -> that fraction of `total_steps` (at least one step); a whole number ->
    int; lists and tuples element-wise; None stays None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(resolve_steps(v, total_steps, name) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a step count or a fraction of training in (0, 1), got {value!r}")
    if isinstance(value, float) and 0 < value < 1:
        return max(1, round(value * total_steps))
    if value != int(value):
        raise ValueError(f"{name} must be a whole number of steps or a fraction in (0, 1), got {value}")
    return int(value)


def build_schedule(name: str, total_steps: int, **kwargs: Any) -> Schedule:
    """Build a registered schedule for a run of `total_steps` steps.

    Record defaults are overridden by `kwargs`; `total_steps` is passed when the schedule has that
    field; step-count fields given as fractions of training are turned into steps.
    """
    record = SCHEDULES.get(name, "schedule.name")
    cls = record.target
    args = {**record.defaults, **kwargs}
    try:
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps must be a positive whole number, got {total_steps}")
        if "total_steps" in accepted_arguments(cls)[0]:
            args.setdefault("total_steps", int(total_steps))
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if f.metadata.get("steps") and f.name in args:
                    args[f.name] = resolve_steps(args[f.name], total_steps, f.name)
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"schedule ({name}): {exc}") from None


def apply(schedule: Schedule, optimizer: torch.optim.Optimizer, step: int, key: str = "lr") -> float:
    """Write `initial_<key> * schedule(step)` into every param group; return the multiplier.

    `key` is any group hyperparameter ("lr", "momentum", "weight_decay", ...) or "beta1", the first
    entry of Adam-style `betas` (see `apply_beta1`). A tensor-valued hyperparameter (capturable or
    compiled optimizers) is updated in place, so graphs that captured it see the new value.

    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    >>> from steepest.schedules.decay import Exponential
    >>> apply(Exponential(0.5), opt, 2), opt.param_groups[0]["lr"]
    (0.25, 0.025)
    """
    if key == "beta1":
        return apply_beta1(schedule, optimizer, step)
    factor = float(schedule(step))
    base = "initial_" + key
    for group in optimizer.param_groups:
        if key not in group:
            raise KeyError(f"the optimizer has no '{key}' hyperparameter to schedule")
        if base not in group:
            group[base] = _as_float(group[key])
        _write(group, key, group[base] * factor)
    return factor


def apply_beta1(schedule: Schedule, optimizer: torch.optim.Optimizer, step: int) -> float:
    """Schedule beta1 inside `betas`: betas = (initial_beta1 * schedule(step), beta2, ...).

    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], betas=(0.9, 0.999))
    >>> from steepest.schedules.decay import Exponential
    >>> apply_beta1(Exponential(0.5), opt, 1), opt.param_groups[0]["betas"]
    (0.5, (0.45, 0.999))
    """
    factor = float(schedule(step))
    for group in optimizer.param_groups:
        if "betas" not in group:
            raise KeyError("the optimizer has no 'betas' hyperparameter to schedule beta1 in")
        betas = tuple(group["betas"])
        group.setdefault("initial_beta1", _as_float(betas[0]))
        value = group["initial_beta1"] * factor
        if isinstance(betas[0], torch.Tensor):
            betas[0].fill_(value)
            group["betas"] = betas
        else:
            group["betas"] = (value, *betas[1:])
    return factor


def linear_scaling_lr(base_lr: float, batch_size: int, base_batch_size: int = 256) -> float:
    """The linear scaling rule (Goyal et al. 2017, "Accurate, Large Minibatch SGD"):
    lr = base_lr * batch_size / base_batch_size. Pair it with a warmup for large batches.

    >>> linear_scaling_lr(0.1, 1024)
    0.4
    """
    if batch_size < 1 or base_batch_size < 1:
        raise ValueError("batch sizes must be >= 1")
    return base_lr * batch_size / base_batch_size


def _as_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _write(group: dict[str, Any], key: str, value: float) -> None:
    if isinstance(group[key], torch.Tensor):
        group[key].fill_(value)  # in place: keeps the tensor a compiled/captured step reads
    else:
        group[key] = value
