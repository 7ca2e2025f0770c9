"""Training scalars to the metric store (and the console), synced to the host only at log steps."""

from __future__ import annotations

import sys
from typing import Any

import torch

from steepest.train.events import Callback


class MetricLogger(Callback):
    name = "metric_logger"

    def __init__(self, store=None, every_n_steps: int = 10, console: bool = True):
        self.store, self.every_n_steps, self.console = store, every_n_steps, console
        self.loss_sum: torch.Tensor | None = None
        self.count = 0

    def on_step_end(self, trainer, output) -> None:
        if not output.skipped:
            self.loss_sum = output.loss if self.loss_sum is None else self.loss_sum + output.loss
            self.count += 1
        step = trainer.state.step
        if step % self.every_n_steps == 0 and self.count:
            values = {"train_loss": float(self.loss_sum) / self.count, "lr": trainer.optimizer.param_groups[0]["lr"]}
            if output.grad_norm is not None:
                values["grad_norm"] = float(output.grad_norm)
            if trainer.state.nonfinite_total:
                values["nonfinite_steps"] = trainer.state.nonfinite_total
            trainer.state.metrics["train_loss"] = values["train_loss"]
            self.loss_sum, self.count = None, 0
            if self.store is not None:
                self.store.log(step, values)

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        if self.store is not None:
            self.store.log(trainer.state.step, metrics)
            self.store.flush()
        if self.console and trainer.is_main_process and not trainer.progress_active:
            shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            train = trainer.state.metrics.get("train_loss")
            lead = f"epoch {trainer.state.epoch:>3} step {trainer.state.step:>6}"
            print(f"{lead} | " + (f"train_loss {train:.4f} | " if train is not None else "") + shown, file=sys.stderr)

    def on_fit_end(self, trainer) -> None:
        if self.store is not None:
            self.store.flush()

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum, self.count = state["loss_sum"], state["count"]
