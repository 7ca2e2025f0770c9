"""Constant, cosine and warmup+cosine: the first schedules (the full catalogue lives beside them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from steepest.schedules._registry import SCHEDULES


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant:
    """Multiplier 1 at every step."""

    def __call__(self, step: int) -> float:
        return 1.0


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine:
    """Cosine annealing from 1 to eta_min_ratio over total_steps (Loshchilov & Hutter 2017)."""

    total_steps: int
    eta_min_ratio: float = 0.0

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError("total_steps must be >= 1")

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps) / self.total_steps
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("warmup_cosine")
@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup over warmup_fraction of training, then cosine decay to eta_min_ratio."""

    total_steps: int
    warmup_fraction: float = 0.05
    eta_min_ratio: float = 0.0

    def __post_init__(self):
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError("warmup_fraction must be in [0, 1)")

    def __call__(self, step: int) -> float:
        warmup = int(round(self.warmup_fraction * self.total_steps))
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, self.total_steps - warmup)
        t = min(step - warmup, span) / span
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
