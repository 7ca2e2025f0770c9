"""Cyclical schedules: OneCycle (Smith & Topin 2019) and cyclical learning rates (Smith 2017).

Multipliers are relative to the peak: set the optimizer's lr to OneCycle's max_lr / CyclicLR's max_lr,
and give the other ends as ratios (`div_factor`, `base_ratio`). Momentum follows OneCycle with
`OneCycleMomentum` (registered as onecycle_momentum) under the key "momentum" or "beta1".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from steepest.schedules._registry import SCHEDULES


def _anneal(start: float, end: float, pct: float, strategy: str) -> float:
    if strategy == "cos":
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


@SCHEDULES.register("onecycle")
@dataclass(frozen=True)
class OneCycle:
    """Warm up from 1/div_factor to 1 over pct_start of training, then anneal to
    1/(div_factor * final_div_factor)   (OneCycleLR, two phases)."""

    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: str = "cos"

    def __post_init__(self):
        if self.anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be cos or linear")
        if not 0 < self.pct_start < 1:
            raise ValueError("pct_start must be in (0, 1)")

    def phase(self, step: int) -> tuple[float, float, float]:
        """(start, end, progress) of the phase containing `step`, in multiples of the peak."""
        initial = 1 / self.div_factor
        low = initial / self.final_div_factor
        up_end = float(self.pct_start * self.total_steps) - 1
        down_end = self.total_steps - 1
        if step <= up_end:
            return initial, 1.0, step / up_end if up_end > 0 else 1.0
        return 1.0, low, (step - up_end) / (down_end - up_end)

    def __call__(self, step: int) -> float:
        start, end, pct = self.phase(min(step, self.total_steps - 1))
        return _anneal(start, end, pct, self.anneal_strategy)


@SCHEDULES.register("onecycle_momentum")
@dataclass(frozen=True)
class OneCycleMomentum:
    """Momentum moving opposite to OneCycle's lr: max -> base while the lr rises, base -> max after.
    Multiplier of max_momentum (default 0.95, base 0.85)."""

    total_steps: int
    pct_start: float = 0.3
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    anneal_strategy: str = "cos"

    def __call__(self, step: int) -> float:
        cycle = OneCycle(self.total_steps, self.pct_start, anneal_strategy=self.anneal_strategy)
        _, _, pct = cycle.phase(min(step, self.total_steps - 1))
        rising = min(step, self.total_steps - 1) <= float(self.pct_start * self.total_steps) - 1
        start, end = (self.max_momentum, self.base_momentum) if rising else (self.base_momentum, self.max_momentum)
        return _anneal(start, end, pct, self.anneal_strategy) / self.max_momentum


@SCHEDULES.register("cyclic")
@dataclass(frozen=True)
class Cyclic:
    """Triangular cycles between base_ratio and 1 (CyclicLR): modes triangular, triangular2 (halve the
    height every cycle) and exp_range (height scaled by gamma^step)."""

    step_size_up: int = 2000
    step_size_down: int | None = None
    base_ratio: float = 0.1
    mode: str = "triangular"
    gamma: float = 1.0

    def __post_init__(self):
        if self.mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError("mode must be triangular, triangular2 or exp_range")

    def __call__(self, step: int) -> float:
        down = self.step_size_down if self.step_size_down is not None else self.step_size_up
        total = self.step_size_up + down
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        height = (1 - self.base_ratio) * scale
        if self.mode == "triangular2":
            height *= 1 / (2.0 ** (cycle - 1))
        elif self.mode == "exp_range":
            height *= self.gamma**step
        return self.base_ratio + height
