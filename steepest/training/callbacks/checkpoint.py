"""Save the whole training state every n steps / epochs, and the best weights by a metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steepest.training.checkpoint import CheckpointManager
from steepest.training.events import Callback
from steepest.training.metrics import improves, metric_mode


class Checkpoint(Callback):
    name = "checkpoint"

    def __init__(self, directory: str | Path, every_n_steps: int | None = None, every_n_epochs: int | None = 1,
                 keep_last: int = 2, keep_best: bool = True, monitor: str = "val_loss"):
        self.manager = CheckpointManager(directory, keep_last)
        self.every_n_steps, self.every_n_epochs = every_n_steps, every_n_epochs
        self.keep_best, self.monitor = keep_best, monitor
        self.mode = metric_mode(monitor)
        self.best: float | None = None
        self.last_saved_step = -1

    def save(self, trainer) -> None:
        if trainer.state.step == self.last_saved_step:
            return
        self.last_saved_step = trainer.state.step
        if trainer.is_main_process or trainer.sharded:  # FSDP gathers the full state: every rank takes part
            state = trainer.state_dict()
            if trainer.is_main_process:
                self.manager.save(trainer.state.step, state)

    def on_step_end(self, trainer, output) -> None:
        if self.every_n_steps and trainer.state.step % self.every_n_steps == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer) -> None:
        if self.every_n_epochs and trainer.state.epoch % self.every_n_epochs == 0:
            self.last_saved_step = -1  # the epoch boundary itself is worth a save
            self.save(trainer)

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        if split != "val" or not self.keep_best or value is None:
            return
        if improves(value, self.best, self.mode):
            self.best = value
            model_state = trainer.model_state_dict() if trainer.is_main_process or trainer.sharded else None
            if trainer.is_main_process:
                self.manager.save_best({"model": model_state, "step": trainer.state.step,
                                        "metric": {self.monitor: value}, "config": trainer.recipe})

    def on_fit_end(self, trainer) -> None:
        self.save(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
