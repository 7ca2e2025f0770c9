"""Training scalars, collected on the device and sent to the loggers (the `on_log` event) at log
steps only; a logger that writes them to the run's metric store; one that prints evaluations."""

from __future__ import annotations

import sys
from typing import Any

import torch

from steepest.training.events import Callback


class TrainScalars(Callback):
    """Every `every_n_steps` steps: the train loss as the mean over the interval's steps (skipped
    steps excluded), the lr, the pre-clip gradient norm of the step and the count of non-finite
    steps so far. The losses are summed on the device; the host reads them once per interval."""

    name = "metric_logger"  # the key its state has in checkpoints

    def __init__(self, every_n_steps: int = 10):
        self.every_n_steps = every_n_steps
        self.loss_sum: torch.Tensor | None = None
        self.count = 0

    def on_step_end(self, trainer, output) -> None:
        if not output.skipped:
            self.loss_sum = output.loss if self.loss_sum is None else self.loss_sum + output.loss
            self.count += 1
        if trainer.state.step % self.every_n_steps or not self.count:
            return
        values = {"train_loss": float(self.loss_sum) / self.count, "lr": trainer.optimizer.param_groups[0]["lr"]}
        if output.grad_norm is not None:
            values["grad_norm"] = float(output.grad_norm)
        if trainer.state.nonfinite_total:
            values["nonfinite_steps"] = trainer.state.nonfinite_total
        trainer.state.metrics["train_loss"] = values["train_loss"]
        self.loss_sum, self.count = None, 0
        trainer.log(values)

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum, self.count = state["loss_sum"], state["count"]


class StoreLogger(Callback):
    """Every logged scalar into the run's `MetricStore` (SQLite), on the main process; written to
    disk after each evaluation and at the end."""

    name = "store_logger"

    def __init__(self, store):
        self.store = store

    def on_log(self, trainer, step: int, values: dict[str, float]) -> None:
        if trainer.is_main_process:
            self.store.log(step, values)

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        self.store.flush()

    def on_fit_end(self, trainer) -> None:
        self.store.flush()

    on_exception = lambda self, trainer, exc: self.store.flush()  # noqa: E731


class ConsoleLogger(Callback):
    """One line per evaluation on stderr (main process): epoch, step, the latest train loss and the
    split's metrics. Used when no progress bar shows them."""

    name = "console_logger"

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        if not trainer.is_main_process:
            return
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        train = trainer.state.metrics.get("train_loss")
        lead = f"epoch {trainer.state.epoch:>3} step {trainer.state.step:>6}"
        print(f"{lead} | " + (f"train_loss {train:.4f} | " if train is not None else "") + shown, file=sys.stderr)
