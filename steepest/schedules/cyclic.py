"""Cyclical schedules: OneCycle (Smith & Topin 2019, "Super-Convergence") and cyclical learning
rates (Smith 2017, "Cyclical Learning Rates for Training Neural Networks"), with their momentum
cycles.

Multipliers are relative to the peak, because a schedule scales each group's own base value:
where torch takes absolute values, steepest takes ratios.

    torch                                    steepest
    OneCycleLR(max_lr=M, div_factor=d, ...)  optimizer lr = M;  onecycle(div_factor=d, ...)
    CyclicLR(base_lr=b, max_lr=M)            optimizer lr = M;  cyclic(base_ratio=b / M)
    max_momentum=m1, base_momentum=m0        optimizer momentum (or beta1) = m1;
                                             onecycle_momentum / cyclic_momentum(base_momentum=m0,
                                             max_momentum=m1) under key "momentum" or "beta1"
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from steepest.schedules.base import StepCount, steps


def _anneal(start: float, end: float, pct: float, strategy: str) -> float:
    if strategy == "cos":
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def _onecycle_phases(total_steps: int, pct_start: float, three_phase: bool) -> list[tuple[float, int, int]]:
    """(end_step, start point, end point) per phase; points 0 = initial, 1 = peak, 2 = final.
    The end steps are torch's OneCycleLR float expressions, so the two agree to the last bit."""
    up = float(pct_start * total_steps) - 1
    if three_phase:
        return [(up, 0, 1), (float(2 * pct_start * total_steps) - 2, 1, 0), (total_steps - 1, 0, 2)]
    return [(up, 0, 1), (total_steps - 1, 1, 2)]


def _onecycle_position(step: int, total_steps: int, pct_start: float, three_phase: bool) -> tuple[int, int, float]:
    step = min(step, total_steps - 1)
    start_step = 0.0
    phases = _onecycle_phases(total_steps, pct_start, three_phase)
    for i, (end_step, a, b) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            span = end_step - start_step
            return a, b, (step - start_step) / span if span > 0 else 1.0
        start_step = end_step
    raise AssertionError("unreachable")


def _check_onecycle(pct_start: float, anneal_strategy: str) -> None:
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError("anneal_strategy must be cos or linear")
    if not 0 < pct_start < 1:
        raise ValueError("pct_start must be in (0, 1)")


@dataclass(frozen=True)
class OneCycle:
    """OneCycle: warm up from 1/div_factor to 1 over pct_start of training, then anneal (cos or
    linear) to 1/(div_factor * final_div_factor). With three_phase, come back down to 1/div_factor
    symmetrically and then anneal to the final value (the paper's form). Equals torch's OneCycleLR
    with max_lr = the optimizer's lr.

    >>> s = OneCycle(total_steps=100, pct_start=0.25, div_factor=10, final_div_factor=100)
    >>> round(s(0), 6), s(24), s(99)
    (0.1, 1.0, 0.001)
    """

    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: str = "cos"
    three_phase: bool = False

    def __post_init__(self):
        _check_onecycle(self.pct_start, self.anneal_strategy)
        if self.div_factor <= 0 or self.final_div_factor <= 0:
            raise ValueError("div_factor and final_div_factor must be > 0")

    def __call__(self, step: int) -> float:
        a, b, pct = _onecycle_position(step, self.total_steps, self.pct_start, self.three_phase)
        initial = 1 / self.div_factor
        points = (initial, 1.0, initial / self.final_div_factor)
        return _anneal(points[a], points[b], pct, self.anneal_strategy)


@dataclass(frozen=True)
class OneCycleMomentum:
    """OneCycle's momentum (or beta1): max -> base while the lr rises, base -> max while it falls
    (three_phase: max again during the final phase). A multiplier of max_momentum, so set the
    optimizer's momentum to max_momentum; equals OneCycleLR(cycle_momentum=True).

    >>> s = OneCycleMomentum(total_steps=100)
    >>> s(0), round(0.95 * s(29), 6), round(0.95 * s(99), 6)
    (1.0, 0.85, 0.95)
    """

    total_steps: int
    pct_start: float = 0.3
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    anneal_strategy: str = "cos"
    three_phase: bool = False

    def __post_init__(self):
        _check_onecycle(self.pct_start, self.anneal_strategy)
        if not 0 <= self.base_momentum <= self.max_momentum or self.max_momentum <= 0:
            raise ValueError("need 0 <= base_momentum <= max_momentum, max_momentum > 0")

    def __call__(self, step: int) -> float:
        a, b, pct = _onecycle_position(step, self.total_steps, self.pct_start, self.three_phase)
        points = (self.max_momentum, self.base_momentum, self.max_momentum)
        return _anneal(points[a], points[b], pct, self.anneal_strategy) / self.max_momentum


@dataclass(frozen=True)
class Cyclic:
    """Cyclical learning rates: triangles between base_ratio and peak_ratio (torch's CyclicLR, whose
    base_lr and max_lr are base_ratio and peak_ratio times the optimizer's lr; Smith 2017).

        cycle = floor(1 + t / (up + down)),  x = 1 + t / (up + down) - cycle
        h = x / rho if x <= rho else (x - 1) / (rho - 1),   rho = up / (up + down)
        m(t) = base_ratio + (peak_ratio - base_ratio) h s,  s = 1 | 1 / 2^(cycle - 1) | gamma^t

    for modes triangular, triangular2 and exp_range. The registry default cycle is 10% of training
    up, 10% down; peak_ratio defaults to 1 (the optimizer's lr is the peak).

    >>> s = Cyclic(step_size_up=10, base_ratio=0.1)
    >>> s(0), s(5), s(10), s(20)
    (0.1, 0.55, 1.0, 0.1)
    """

    step_size_up: StepCount = steps(2000)
    step_size_down: StepCount | None = steps(None)
    base_ratio: float = 0.1
    mode: str = "triangular"
    gamma: float = 1.0
    peak_ratio: float = 1.0

    def __post_init__(self):
        if self.mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError("mode must be triangular, triangular2 or exp_range")
        if self.step_size_up < 1 or (self.step_size_down is not None and self.step_size_down < 0):
            raise ValueError("step_size_up must be >= 1 and step_size_down >= 0")
        if not 0 < self.peak_ratio or not math.isfinite(self.peak_ratio):
            raise ValueError("peak_ratio must be a finite number > 0")
        if not 0 <= self.base_ratio <= self.peak_ratio:
            raise ValueError(f"base_ratio must be in [0, peak_ratio] = [0, {self.peak_ratio:g}]")

    def height(self, step: int) -> float:
        """The fraction of the way from the base to the peak at `step`, mode scaling included."""
        down = self.step_size_down if self.step_size_down is not None else self.step_size_up
        total = float(self.step_size_up + down)
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular2":
            return scale * (1 / (2.0 ** (cycle - 1)))
        if self.mode == "exp_range":
            return scale * self.gamma**step
        return scale

    def __call__(self, step: int) -> float:
        return self.base_ratio + (self.peak_ratio - self.base_ratio) * self.height(step)


@dataclass(frozen=True)
class CyclicMomentum:
    """CyclicLR's momentum, moving opposite to the lr: max_momentum - (max - base) h(t), with h
    Cyclic's height. A multiplier of max_momentum (set the optimizer's momentum to it).

    >>> s = CyclicMomentum(step_size_up=10)
    >>> s(0), round(0.9 * s(10), 6)
    (1.0, 0.8)
    """

    step_size_up: StepCount = steps(2000)
    step_size_down: StepCount | None = steps(None)
    mode: str = "triangular"
    gamma: float = 1.0
    base_momentum: float = 0.8
    max_momentum: float = 0.9

    def __post_init__(self):
        if not 0 <= self.base_momentum <= self.max_momentum or self.max_momentum <= 0:
            raise ValueError("need 0 <= base_momentum <= max_momentum, max_momentum > 0")
        Cyclic(self.step_size_up, self.step_size_down, 0.0, self.mode, self.gamma)  # validates

    def __call__(self, step: int) -> float:
        h = Cyclic(self.step_size_up, self.step_size_down, 0.0, self.mode, self.gamma).height(step)
        return (self.max_momentum - (self.max_momentum - self.base_momentum) * h) / self.max_momentum
