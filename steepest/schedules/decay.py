"""Decay schedules: step, multistep, exponential, polynomial, cosine with warm restarts, linear
warmup (by default from lr/20 to lr over the first 10% of training), inverse square root and
warmup-stable-decay. Each `__call__(step)` is the multiplier of the base value.

Step-count fields accept fractions of training through `build_schedule` (see `base.py`); the
registry defaults use that, so `build_schedule("step", 90)` decays every 30 steps.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from steepest.schedules.base import StepCount, steps
from steepest.schedules.basic import half_cosine, warmup_span


@dataclass(frozen=True)
class Step:
    """Step decay, m(t) = gamma^floor(t / step_size)   (torch's StepLR).

    >>> s = Step(step_size=30, gamma=0.1)
    >>> s(29), s(30), round(s(60), 6)
    (1.0, 0.1, 0.01)
    """

    step_size: StepCount = steps()
    gamma: float = 0.1

    def __post_init__(self):
        if self.step_size < 1:
            raise ValueError("step_size must be >= 1")

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class MultiStep:
    """m(t) = gamma^(number of milestones <= t)   (torch's MultiStepLR; a repeated milestone
    decays twice, as there).

    >>> s = MultiStep(milestones=(30, 60, 80))
    >>> s(29), s(30), round(s(80), 6)
    (1.0, 0.1, 0.001)
    """

    milestones: tuple[StepCount, ...] = steps()
    gamma: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))

    def __call__(self, step: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, step)


@dataclass(frozen=True)
class Exponential:
    """m(t) = gamma^t   (torch's ExponentialLR).

    >>> round(Exponential(0.9)(2), 6)
    0.81
    """

    gamma: float = 0.99

    def __post_init__(self):
        if self.gamma <= 0:
            raise ValueError("gamma must be > 0")

    def __call__(self, step: int) -> float:
        return self.gamma**step


@dataclass(frozen=True)
class Polynomial:
    """Polynomial decay eta_0 (1 - t/T)^p (the "poly" policy of DeepLab, Chen et al. 2017), down to
    `end_ratio` (Keras' PolynomialDecay's end_learning_rate / eta_0):

        m(t) = end_ratio + (1 - end_ratio) (1 - min(t, T) / T)^power

    (with end_ratio 0, torch's PolynomialLR with total_iters = T; power 1 is linear decay to 0).

    >>> s = Polynomial(total_steps=100, power=2.0)
    >>> s(0), s(50), s(100)
    (1.0, 0.25, 0.0)
    >>> Polynomial(total_steps=100, power=1.0, end_ratio=0.2)(100)
    0.2
    """

    total_steps: int
    power: float = 1.0
    end_ratio: float = 0.0

    def __post_init__(self):
        if self.total_steps < 1 or self.power < 0:
            raise ValueError("total_steps must be >= 1 and power >= 0")
        if not 0 <= self.end_ratio <= 1:
            raise ValueError("end_ratio must be in [0, 1]")

    def __call__(self, step: int) -> float:
        decayed = (1 - min(step, self.total_steps) / self.total_steps) ** self.power
        return decayed if not self.end_ratio else self.end_ratio + (1 - self.end_ratio) * decayed


@dataclass(frozen=True)
class CosineRestarts:
    """SGDR (Loshchilov & Hutter 2017): cosine cycles of T_0, T_0 T_mult, T_0 T_mult^2, ... steps,
    each restarting at 1   (torch's CosineAnnealingWarmRestarts; `t0`, `t_mult` are T_0, T_mult).

        m(t) = r + (1 - r) (1 + cos(pi T_cur / T_i)) / 2

    >>> s = CosineRestarts(t0=10, t_mult=2)
    >>> s(0), round(s(5), 6), s(10), round(s(20), 6), s(30)
    (1.0, 0.5, 1.0, 0.5, 1.0)
    """

    t0: StepCount = steps()
    t_mult: int = 1
    eta_min_ratio: float = 0.0

    def __post_init__(self):
        if self.t0 < 1 or self.t_mult < 1 or int(self.t_mult) != self.t_mult:
            raise ValueError("t0 must be >= 1 and t_mult a whole number >= 1")

    def __call__(self, step: int) -> float:
        if self.t_mult == 1:
            t_cur, t_i = step % self.t0, self.t0
        else:  # the same float expression as torch, so cycle edges agree with it
            n = int(math.log(step / self.t0 * (self.t_mult - 1) + 1, self.t_mult)) if step >= self.t0 else 0
            t_cur = step - self.t0 * (self.t_mult**n - 1) // (self.t_mult - 1)
            t_i = self.t0 * self.t_mult**n
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * half_cosine(t_cur / t_i)


@dataclass(frozen=True)
class Warmup:
    """Linear warmup (Goyal et al. 2017) from `start_ratio` to 1 over W steps, then 1:

        m(t) = s + (1 - s) t / W   for t < W,   1 afterwards

    W is `warmup_steps`, or `warmup_fraction` of training. The defaults start at lr/20 and reach
    lr after 10% of training (Goyal et al. warm up over 5 of 90 epochs, from a small fraction of lr). Join it with a decay (`join`) for
    warmup followed by anything. W = 0 (no warmup) is 1 from step 0.

    >>> s = Warmup(total_steps=1000)
    >>> s(0), s(50), s(100)
    (0.05, 0.525, 1.0)
    >>> Warmup(total_steps=1000, warmup_fraction=0.0)(0)
    1.0
    """

    total_steps: int
    warmup_fraction: float = 0.1
    warmup_steps: StepCount | None = steps(None)
    start_ratio: float = 0.05

    def __post_init__(self):
        if not 0 <= self.warmup_fraction <= 1 or not 0 <= self.start_ratio <= 1:
            raise ValueError("warmup_fraction and start_ratio must be in [0, 1]")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def span(self) -> int:
        """W, the number of warmup steps (0: no warmup)."""
        return warmup_span(self.total_steps, self.warmup_fraction, self.warmup_steps)

    def __call__(self, step: int) -> float:
        w = self.span()
        return 1.0 if step >= w else self.start_ratio + (1 - self.start_ratio) * step / w


@dataclass(frozen=True)
class InverseSqrt:
    """The Transformer's schedule (Vaswani et al. 2017, "Attention Is All You Need"), normalized to
    peak at 1 at the end of warmup:

        m(t) = min((t + 1) / W, sqrt(W / (t + 1)))

    The paper's d_model^-0.5 W^-0.5 factor is the base lr. The class default W = 4000 is the paper's;
    the registry default is 5% of training. W = 0 (no warmup) is W = 1: m(t) = 1 / sqrt(t + 1), 1 at
    step 0.

    >>> s = InverseSqrt(warmup_steps=100)
    >>> s(49), s(99), s(399)
    (0.5, 1.0, 0.5)
    >>> InverseSqrt(warmup_steps=0)(0), InverseSqrt(warmup_steps=0)(3)
    (1.0, 0.5)
    """

    warmup_steps: StepCount = steps(4000)

    def __post_init__(self):
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def __call__(self, step: int) -> float:
        s, w = step + 1, max(1, self.warmup_steps)
        return min(s / w, math.sqrt(w / s))


@dataclass(frozen=True)
class WarmupStableDecay:
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024): linear warmup over W
    steps, a constant phase, then a decay over the last D steps to `end_ratio`:

        m(t) = (t + 1) / W                      t < W
        m(t) = 1                                W <= t < T - D
        m(t) = r + (1 - r) f((t - T + D) / D)   afterwards,  f(u) = 1 - u | (1 + cos pi u)/2 | 1 - sqrt(u)

    >>> s = WarmupStableDecay(total_steps=100, warmup_fraction=0.1, decay_fraction=0.2)
    >>> s(0), s(50), s(90), s(100)
    (0.1, 1.0, 0.5, 0.0)
    """

    total_steps: int
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2
    decay: str = "linear"
    end_ratio: float = 0.0

    def __post_init__(self):
        if self.decay not in ("linear", "cosine", "sqrt"):
            raise ValueError(f"decay must be linear, cosine or sqrt, got {self.decay!r}")
        if min(self.warmup_fraction, self.decay_fraction) < 0 or self.warmup_fraction + self.decay_fraction > 1:
            raise ValueError("warmup_fraction and decay_fraction must be >= 0 and add up to <= 1")

    def __call__(self, step: int) -> float:
        warm = round(self.warmup_fraction * self.total_steps)
        decay = max(1, round(self.decay_fraction * self.total_steps))
        start = self.total_steps - decay
        if step < warm:
            return (step + 1) / warm
        if step < start:
            return 1.0
        t = min(step - start, decay) / decay
        shape = {"linear": 1 - t, "cosine": half_cosine(t), "sqrt": 1 - math.sqrt(t)}[self.decay]
        return self.end_ratio + (1 - self.end_ratio) * shape
