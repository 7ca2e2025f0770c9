"""Decay schedules: step, multistep, exponential, polynomial, cosine with warm restarts, inverse square
root, warmup (the references' "start at lr/20, reach lr after ~10% of training") and
warmup-stable-decay. Each is a frozen dataclass; `__call__(step)` is the multiplier of the base value.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from steepest.schedules._registry import SCHEDULES


def _cos(t: float) -> float:
    """1 -> 0 along half a cosine as t goes 0 -> 1."""
    return 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("step")
@dataclass(frozen=True)
class Step:
    """gamma^floor(step / step_size)   (torch.optim.lr_scheduler.StepLR)."""

    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        if self.step_size < 1:
            raise ValueError("step_size must be >= 1")

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


@SCHEDULES.register("multistep")
@dataclass(frozen=True)
class MultiStep:
    """gamma^(number of milestones <= step)   (MultiStepLR)."""

    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))

    def __call__(self, step: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, step)


@SCHEDULES.register("exponential")
@dataclass(frozen=True)
class Exponential:
    """gamma^step   (ExponentialLR)."""

    gamma: float = 0.99

    def __call__(self, step: int) -> float:
        return self.gamma**step


@SCHEDULES.register("polynomial")
@dataclass(frozen=True)
class Polynomial:
    """(1 - min(step, T) / T)^power: the references' eta_0 (1 - t/T)^p   (PolynomialLR)."""

    total_steps: int
    power: float = 1.0

    def __call__(self, step: int) -> float:
        return (1 - min(step, self.total_steps) / self.total_steps) ** self.power


@SCHEDULES.register("cosine_restarts")
@dataclass(frozen=True)
class CosineRestarts:
    """SGDR (Loshchilov & Hutter 2017): cosine cycles of t0, t0*t_mult, ... steps   (CosineAnnealingWarmRestarts)."""

    t0: int
    t_mult: int = 1
    eta_min_ratio: float = 0.0

    def __post_init__(self):
        if self.t0 < 1 or self.t_mult < 1:
            raise ValueError("t0 and t_mult must be >= 1")

    def __call__(self, step: int) -> float:
        if self.t_mult == 1:
            t_cur, t_i = step % self.t0, self.t0
        else:
            n = int(math.log(step / self.t0 * (self.t_mult - 1) + 1, self.t_mult)) if step >= self.t0 else 0
            t_cur = step - self.t0 * (self.t_mult**n - 1) // (self.t_mult - 1)
            t_i = self.t0 * self.t_mult**n
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * _cos(t_cur / t_i)


@SCHEDULES.register("warmup")
@dataclass(frozen=True)
class Warmup:
    """Linear warmup from `start_ratio` to 1 over `warmup_fraction` of training (or `warmup_steps`), then 1.
    The defaults are the references' recipe: start at lr/20, reach lr after 10% of training."""

    total_steps: int
    warmup_fraction: float = 0.1
    warmup_steps: int | None = None
    start_ratio: float = 0.05

    def span(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, round(self.warmup_fraction * self.total_steps))

    def __call__(self, step: int) -> float:
        w = self.span()
        return 1.0 if step >= w else self.start_ratio + (1 - self.start_ratio) * step / w


@SCHEDULES.register("inverse_sqrt")
@dataclass(frozen=True)
class InverseSqrt:
    """The Transformer's schedule (Vaswani et al. 2017): linear warmup, then 1/sqrt(step), scaled to
    reach 1 at the end of warmup:  min((s + 1) / w, sqrt(w / (s + 1)))."""

    warmup_steps: int = 4000

    def __call__(self, step: int) -> float:
        s = step + 1
        return min(s / self.warmup_steps, math.sqrt(self.warmup_steps / s))


@SCHEDULES.register("wsd")
@dataclass(frozen=True)
class WarmupStableDecay:
    """Warmup-stable-decay: linear warmup, a long constant phase, then a short decay (linear, cosine
    or 1-sqrt) to `end_ratio` over the last `decay_fraction` of training."""

    total_steps: int
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2
    decay: str = "linear"
    end_ratio: float = 0.0

    def __post_init__(self):
        if self.decay not in ("linear", "cosine", "sqrt"):
            raise ValueError(f"decay must be linear, cosine or sqrt, got {self.decay!r}")
        if self.warmup_fraction + self.decay_fraction > 1:
            raise ValueError("warmup_fraction + decay_fraction must be <= 1")

    def __call__(self, step: int) -> float:
        warm = round(self.warmup_fraction * self.total_steps)
        decay = max(1, round(self.decay_fraction * self.total_steps))
        start = self.total_steps - decay
        if step < warm:
            return (step + 1) / warm
        if step < start:
            return 1.0
        t = min(step - start, decay) / decay
        shape = {"linear": 1 - t, "cosine": _cos(t), "sqrt": 1 - math.sqrt(t)}[self.decay]
        return self.end_ratio + (1 - self.end_ratio) * shape
