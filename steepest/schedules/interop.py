"""Interop with torch.optim.lr_scheduler, both ways: record any torch scheduler as a pure,
tabulated schedule, or hand a steepest schedule to PyTorch code as a LambdaLR."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tabulated:
    """Multipliers listed per step; the last value holds afterwards.

    >>> Tabulated((1.0, 0.5))(7)
    0.5
    """

    values: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        if not self.values:
            raise ValueError("a tabulated schedule needs at least one value")

    def __call__(self, step: int) -> float:
        return self.values[min(step, len(self.values) - 1)]


def from_torch(make_scheduler: Callable[[torch.optim.Optimizer], object], steps: int,
               metric: Callable[[int], float] | None = None) -> Tabulated:
    """Record a torch.optim.lr_scheduler over `steps` steps as a pure schedule.

    `make_scheduler(optimizer)` builds the scheduler on a one-parameter SGD (momentum 0.9) whose lr
    is 1.0, so the recorded lrs are multipliers; give absolute-valued arguments (OneCycleLR's
    max_lr, CyclicLR's base_lr/max_lr) as ratios of your lr. `metric(t)` feeds ReduceLROnPlateau.

    >>> s = from_torch(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, 0.5), 5)
    >>> s.values
    (1.0, 1.0, 0.5, 0.5, 0.25)
    """
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0, momentum=0.9)
    scheduler = make_scheduler(opt)
    values = []
    for t in range(steps):
        values.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        if metric is not None:
            scheduler.step(metric(t))
        else:
            scheduler.step()
    return Tabulated(tuple(values))


def to_torch(schedule: Callable[[int], float], optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following `schedule` (multipliers of each group's lr when the LambdaLR is made);
    call scheduler.step() after each optimizer step. Its state_dict keeps the schedule's fields.

    >>> from steepest.schedules.decay import Step
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = to_torch(Step(1, 0.5), opt)
    >>> opt.step(); sched.step(); opt.param_groups[0]["lr"]
    0.05
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
