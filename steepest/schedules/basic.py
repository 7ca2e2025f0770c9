"""Constant, cosine annealing and warmup+cosine, the schedules most recipes use."""

from __future__ import annotations

import math
from dataclasses import dataclass

from steepest.schedules.base import StepCount, steps


def half_cosine(t: float) -> float:
    """1 -> 0 along half a cosine as t goes 0 -> 1: (1 + cos(pi t)) / 2."""
    return 0.5 * (1 + math.cos(math.pi * t))


def warmup_span(total_steps: int, warmup_fraction: float, warmup_steps: int | None) -> int:
    """Warmup length in steps: `warmup_steps` when given, else round(warmup_fraction * total_steps)."""
    return warmup_steps if warmup_steps is not None else int(round(warmup_fraction * total_steps))


@dataclass(frozen=True)
class Constant:
    """Multiplier 1 at every step: the optimizer's lr, unchanged.

    >>> Constant()(1000)
    1.0
    """

    def __call__(self, step: int) -> float:
        return 1.0


@dataclass(frozen=True)
class Cosine:
    """Cosine annealing (Loshchilov & Hutter 2017, SGDR) from 1 to `eta_min_ratio` over total_steps:

        m(t) = r + (1 - r) (1 + cos(pi min(t, T) / T)) / 2,    r = eta_min / eta_0

    Equal to torch's CosineAnnealingLR(T_max=T, eta_min=r * lr) for t <= T; afterwards it holds r
    (torch's would rise again).

    >>> s = Cosine(total_steps=100, eta_min_ratio=0.1)
    >>> s(0), round(s(50), 6), round(s(100), 6)
    (1.0, 0.55, 0.1)
    """

    total_steps: int
    eta_min_ratio: float = 0.0

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        if not 0 <= self.eta_min_ratio <= 1:
            raise ValueError(f"eta_min_ratio must be in [0, 1], got {self.eta_min_ratio}")

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps) / self.total_steps
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * half_cosine(t)


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup, then cosine decay to `eta_min_ratio`: the standard Transformer schedule
    (Hugging Face transformers' get_cosine_schedule_with_warmup; cosine: Loshchilov & Hutter 2017, warmup: Goyal et al. 2017).

        m(t) = (t + 1) / W                                      t < W
        m(t) = r + (1 - r) (1 + cos(pi (t - W) / (T - W))) / 2  t >= W

    W is `warmup_steps`, or `warmup_fraction` of training. The warmup starts at 1/W, not 0, so the
    first step already trains.

    >>> s = WarmupCosine(total_steps=100, warmup_fraction=0.1)
    >>> s(0), s(9), s(10), round(s(55), 6), s(100)
    (0.1, 1.0, 1.0, 0.5, 0.0)
    """

    total_steps: int
    warmup_fraction: float = 0.05
    eta_min_ratio: float = 0.0
    warmup_steps: StepCount | None = steps(None)

    def __post_init__(self):
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError("warmup_fraction must be in [0, 1)")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.total_steps:
            raise ValueError("warmup_steps must be in [0, total_steps)")

    def __call__(self, step: int) -> float:
        warmup = warmup_span(self.total_steps, self.warmup_fraction, self.warmup_steps)
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, self.total_steps - warmup)
        t = min(step - warmup, span) / span
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * half_cosine(t)
