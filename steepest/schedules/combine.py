"""Combinators and interop: join schedules at step boundaries (or fractions of training), tabulate
any torch.optim.lr_scheduler, or hand a schedule to PyTorch as a LambdaLR."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from steepest.schedules._registry import SCHEDULES


@dataclass(frozen=True)
class Join:
    """`schedules[i]` runs from `boundaries[i-1]` (its own step 0) to `boundaries[i]`.

    >>> from steepest.schedules.decay import Warmup, Exponential
    >>> s = Join((Warmup(100, warmup_steps=10, start_ratio=0.0), Exponential(0.9)), (10,))
    >>> round(s(10), 3), round(s(11), 3)
    (1.0, 0.9)
    """

    schedules: tuple[Callable[[int], float], ...]
    boundaries: tuple[int, ...]

    def __post_init__(self):
        if len(self.boundaries) != len(self.schedules) - 1:
            raise ValueError("join needs one boundary fewer than schedules")
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError("boundaries must be increasing")

    def __call__(self, step: int) -> float:
        i = bisect.bisect_right(self.boundaries, step)
        start = self.boundaries[i - 1] if i else 0
        return self.schedules[i](step - start)


def by_fraction(total_steps: int, parts: list[tuple[float, Callable[[int], float]]]) -> Join:
    """Join schedules that each take a fraction of `total_steps`: [(0.1, warmup), (0.9, cosine)]."""
    fractions = [f for f, _ in parts]
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError("fractions must add up to 1")
    bounds, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        bounds.append(round(acc * total_steps))
    return Join(tuple(s for _, s in parts), tuple(bounds))


@SCHEDULES.register("join")
def join(total_steps: int, parts: list[dict], boundaries: list[float] | None = None):
    """Recipe form: `{name: join, parts: [{name: warmup, ...}, {name: cosine}], boundaries: [0.1]}`;
    boundaries below 1 are fractions of training, others step numbers. Each part's total_steps is its
    own span."""
    from steepest.schedules.base import build_schedule

    if boundaries is None:
        raise ValueError("join needs 'boundaries' (one fewer than parts)")
    steps = [round(b * total_steps) if b < 1 else int(b) for b in boundaries]
    edges = [0, *steps, total_steps]
    built = []
    for i, part in enumerate(parts):
        part = dict(part)
        name = part.pop("name")
        built.append(build_schedule(name, max(1, edges[i + 1] - edges[i]), **part))
    return Join(tuple(built), tuple(steps))


@dataclass(frozen=True)
class Tabulated:
    """Multipliers listed per step (the last value holds afterwards)."""

    values: tuple[float, ...]

    def __call__(self, step: int) -> float:
        return self.values[min(step, len(self.values) - 1)]


def from_torch(make_scheduler: Callable[[torch.optim.Optimizer], object], steps: int, metric: Callable[[int], float] | None = None) -> Tabulated:
    """Record any torch.optim.lr_scheduler over `steps` steps as a pure schedule.

    >>> s = from_torch(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, 0.5), 5)
    >>> s.values
    (1.0, 1.0, 0.5, 0.5, 0.25)
    """
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0, momentum=0.9)
    scheduler = make_scheduler(opt)
    values = []
    for t in range(steps):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step(metric(t)) if metric is not None else scheduler.step()
    return Tabulated(tuple(float(v) for v in values))


def to_torch(schedule: Callable[[int], float], optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that follows `schedule`: call scheduler.step() after each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def linear_scaling_lr(base_lr: float, batch_size: int, base_batch_size: int = 256) -> float:
    """The linear scaling rule (Goyal et al. 2017): lr proportional to the batch size."""
    return base_lr * batch_size / base_batch_size
