"""Stop when a validation metric stops improving; optionally restore the best weights at the end (however training ended)."""

from __future__ import annotations

import math
from typing import Any

import torch

from steepest.errors import ConfigError
from steepest.training.events import Callback
from steepest.training.metrics import improves, metric_mode


class EarlyStopping(Callback):
    """Stop after `patience` evaluations without an improvement larger than `min_delta`, or as soon
    as the monitored value reaches `target` (at least it for a maximized metric, at most it for a
    minimized one: "train until 99% validation accuracy"). NaN and inf never reach a target."""

    name = "early_stopping"

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", patience: int = 5, min_delta: float = 0.0, restore_best: bool = True,
                 target: float | None = None):
        try:
            mode = metric_mode(monitor, mode)
        except ValueError:
            raise ConfigError(f"early_stopping.mode: '{mode}' is not min, max or auto") from None
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.restore_best, self.target = restore_best, target
        self.best: float | None = None
        self.best_step = 0
        self.bad_evals = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def improved(self, value: float) -> bool:
        """A finite value better than the best by more than min_delta (NaN and inf never are)."""
        return improves(value, self.best, self.mode, self.min_delta)

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        if split != "val":
            return
        if self.monitor not in metrics:
            raise ConfigError(f"early_stopping.monitor: '{self.monitor}' is not a validation metric; choose from {', '.join(sorted(metrics))}")
        value = metrics[self.monitor]
        if self.improved(value):
            self.best, self.best_step, self.bad_evals = value, trainer.state.step, 0
            if self.restore_best:
                # FSDP: gathered from the shards (every rank evaluates, so every rank takes part); rank 0 keeps it
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model_state_dict().items()}
            if self.target is not None and math.isfinite(value) and (value >= self.target if self.mode == "max" else value <= self.target):
                trainer.state.request_stop(f"early stopping: {self.monitor} reached the target {self.target:g} ({value:.4g} at step {trainer.state.step})")
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                best = f"best {self.best:.4g} at step {self.best_step}" if self.best is not None else "never finite"
                trainer.state.request_stop(f"early stopping: {self.monitor} did not improve for {self.patience} evaluation{'s' if self.patience != 1 else ''} ({best})")

    def on_fit_end(self, trainer) -> None:
        if trainer.state.stop_reason.startswith("early stopping"):
            self.restore(trainer)

    def restore(self, trainer) -> bool:
        """Put back the weights of the best evaluation (with `restore_best`, unless the last
        evaluation was the best: the weights are those already); the stop reason says so. Called at
        an early stop by `on_fit_end`; after a run that used its whole budget, by whoever ships the
        model (`steepest train` before the test evaluation, `steepest.fit` before returning), after
        the last checkpoint was written, so that a resumed run continues from the last weights. With
        FSDP a collective: every rank calls it."""
        done = "restored the weights" in trainer.state.stop_reason  # once: at the early stop, or after the budget
        if done or not (self.restore_best and self.best_weights is not None and self.best_step != trainer.state.step):
            return False
        trainer.load_model_state_dict(self.best_weights)
        trainer.state.stop_reason += f"; restored the weights of step {self.best_step}"
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step, self.bad_evals = state["best"], state["best_step"], state["bad_evals"]
        self.best_weights = state.get("best_weights")
