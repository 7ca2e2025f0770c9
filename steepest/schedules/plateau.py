"""Reduce-on-plateau: metric-driven, so a small stateful object (wrapped by the `reduce_on_plateau`
callback) rather than a function of the step. Matches torch.optim.lr_scheduler.ReduceLROnPlateau."""

from __future__ import annotations

import math
from typing import Any

_STATE = ("best", "bad_epochs", "cooldown_counter", "multiplier", "last_metric")


class ReduceOnPlateau:
    """Multiply the lr by `factor` once the metric has not improved for more than `patience`
    evaluations, then rest `cooldown` evaluations; `step(metric)` returns the current multiplier.

    Improvement (mode min; max mirrors it):
        rel: metric < best (1 - threshold)      abs: metric < best - threshold
    Reduction: m <- max(m factor, min_ratio), skipped when it would change the lr by <= eps.

    The floor is a ratio of the base lr (`min_ratio`), as every multiplier is; torch's absolute
    `min_lr` is min_lr / base_lr. Give `min_lr` together with `base_lr` to have it converted, and
    `eps` then compares lrs (as torch does) rather than multipliers.

    >>> p = ReduceOnPlateau(factor=0.5, patience=1)
    >>> [p.step(m) for m in (1.0, 1.0, 1.0, 0.5, 0.6, 0.6)]
    [1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    """

    def __init__(self, mode: str = "min", factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: str = "rel", cooldown: int = 0, min_ratio: float = 0.0, eps: float = 1e-8,
                 *, min_lr: float | None = None, base_lr: float | None = None):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be rel or abs, got {threshold_mode!r}")
        if patience < 0 or cooldown < 0:
            raise ValueError("patience and cooldown must be >= 0")
        self.scale = 1.0  # lr units per multiplier unit, for eps
        if min_lr is not None or base_lr is not None:
            if base_lr is None or base_lr <= 0:
                raise ValueError("min_lr needs the positive base_lr it is a fraction of")
            min_ratio, self.scale = (min_lr or 0.0) / base_lr, base_lr
        if min_ratio < 0:
            raise ValueError("min_ratio must be >= 0")
        self.mode, self.factor, self.patience, self.threshold = mode, factor, patience, threshold
        self.threshold_mode, self.cooldown, self.min_ratio, self.eps = threshold_mode, cooldown, min_ratio, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_counter = 0
        self.multiplier = 1.0
        self.last_metric: float | None = None

    def is_better(self, metric: float, best: float) -> bool:
        """A finite metric beyond the threshold of `best` (NaN and +-inf are never better)."""
        if not math.isfinite(metric):
            return False
        rel, sign = self.threshold_mode == "rel", 1 if self.mode == "min" else -1
        if self.mode == "min":
            bound = best * (1 - self.threshold) if rel else best - self.threshold
        else:
            bound = best * (1 + self.threshold) if rel else best + self.threshold
        return sign * metric < sign * bound

    def step(self, metric: float) -> float:
        """Record one evaluation of the metric; return the multiplier to apply from now on."""
        metric = float(metric)  # a 0-dim tensor is fine; state stays plain floats
        self.last_metric = metric
        if self.is_better(metric, self.best):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.bad_epochs = 0  # bad evaluations during cooldown do not count
        if self.bad_epochs > self.patience:
            new = max(self.multiplier * self.factor, self.min_ratio)
            if (self.multiplier - new) * self.scale > self.eps:
                self.multiplier = new
            self.cooldown_counter, self.bad_epochs = self.cooldown, 0
        return self.multiplier

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - set(_STATE)
        if unknown:
            raise KeyError(f"unknown ReduceOnPlateau state: {sorted(unknown)}")
        for k, v in state.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        return (f"ReduceOnPlateau(mode={self.mode!r}, factor={self.factor}, patience={self.patience}, "
                f"threshold={self.threshold}, threshold_mode={self.threshold_mode!r}, cooldown={self.cooldown}, "
                f"min_ratio={self.min_ratio}, multiplier={self.multiplier})")
