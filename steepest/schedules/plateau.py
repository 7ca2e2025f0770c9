"""Reduce-on-plateau: metric-driven, so it is a small stateful object (and the `reduce_on_plateau`
callback), not a function of the step. Matches torch.optim.lr_scheduler.ReduceLROnPlateau."""

from __future__ import annotations

import math
from typing import Any


class ReduceOnPlateau:
    """`step(metric)` returns the current multiplier: multiplied by `factor` after more than
    `patience` evaluations without improvement, then `cooldown` evaluations of rest; never below
    `min_ratio`."""

    def __init__(self, mode: str = "min", factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: str = "rel", cooldown: int = 0, min_ratio: float = 0.0, eps: float = 1e-8):
        if factor >= 1.0 or factor <= 0:
            raise ValueError("factor must be in (0, 1)")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError("mode must be min/max and threshold_mode rel/abs")
        self.mode, self.factor, self.patience, self.threshold = mode, factor, patience, threshold
        self.threshold_mode, self.cooldown, self.min_ratio, self.eps = threshold_mode, cooldown, min_ratio, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_counter = 0
        self.multiplier = 1.0

    def _better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return a < (best * (1 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return a > (best * (1 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metric: float) -> float:
        if self._better(metric, self.best):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            new = max(self.multiplier * self.factor, self.min_ratio)
            if self.multiplier - new > self.eps:
                self.multiplier = new
            self.cooldown_counter, self.bad_epochs = self.cooldown, 0
        return self.multiplier

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("best", "bad_epochs", "cooldown_counter", "multiplier")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
