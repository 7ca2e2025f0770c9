"""Reduce the learning rate when a validation metric stops improving (on top of the step schedule)."""

from __future__ import annotations

from typing import Any

from steepest.errors import ConfigError
from steepest.schedules.plateau import ReduceOnPlateau
from steepest.training.events import Callback
from steepest.training.metrics import metric_mode


class ReduceLROnPlateau(Callback):
    """Multiply every group's lr by `factor` after `patience` evaluations without improvement of
    `monitor`. The multiplier composes with the step schedule (applied after it, every step)."""

    name = "reduce_on_plateau"

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", factor: float = 0.1, patience: int = 3,
                 threshold: float = 1e-4, cooldown: int = 0, min_ratio: float = 0.0):
        mode = metric_mode(monitor, mode)
        self.monitor = monitor
        self.plateau = ReduceOnPlateau(mode, factor, patience, threshold, "rel", cooldown, min_ratio)

    def on_step_start(self, trainer, batches) -> None:
        if self.plateau.multiplier != 1.0:
            for group in trainer.optimizer.param_groups:
                group["lr"] *= self.plateau.multiplier

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        if split != "val":
            return
        if self.monitor not in metrics:
            raise ConfigError(f"reduce_on_plateau.monitor: '{self.monitor}' is not a validation metric; choose from {', '.join(sorted(metrics))}")
        self.plateau.step(metrics[self.monitor])

    def state_dict(self) -> dict[str, Any]:
        return self.plateau.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau.load_state_dict(state)
