"""A progress bar over optimizer steps (silent when stderr is not a terminal) that keeps history:
one line per validation above the bar (epoch, step, the latest train loss, the validation
metrics), and how training ended."""

from __future__ import annotations

import sys

from steepest.training.events import Callback


class ProgressBar(Callback):
    name = "progress"

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None

    def on_fit_start(self, trainer) -> None:
        if self.enabled and trainer.is_main_process:
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.total_steps, initial=trainer.state.step, unit="step", dynamic_ncols=True, leave=False,
                            desc="training")

    def on_step_end(self, trainer, output) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, trainer, step: int, values: dict[str, float]) -> None:
        if self.bar is not None and "train_loss" in values:
            self.bar.set_postfix({"train_loss": f"{values['train_loss']:.4f}"})

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.write(evaluation_line(trainer, metrics))

    def on_fit_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            if trainer.state.stop_reason:
                print(f"stopped: {trainer.state.stop_reason}", file=sys.stderr)

    on_exception = lambda self, trainer, exc: self.on_fit_end(trainer)  # noqa: E731


def evaluation_line(trainer, metrics: dict[str, float]) -> str:
    """`epoch   3 step    120 | train_loss 0.4121 | val_loss 0.3800 val_accuracy 0.9100`."""
    shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    train = trainer.state.metrics.get("train_loss")
    lead = f"epoch {trainer.state.epoch:>3} step {trainer.state.step:>6}"
    return f"{lead} | " + (f"train_loss {train:.4f} | " if train is not None else "") + shown
