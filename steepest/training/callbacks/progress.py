"""A progress bar over optimizer steps; silent when stderr is not a terminal."""

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

            self.bar = tqdm(total=trainer.total_steps, initial=trainer.state.step, unit="step", dynamic_ncols=True, leave=False)

    def on_step_end(self, trainer, output) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k.replace("val_", ""): f"{v:.4f}" for k, v in metrics.items() if k in ("val_loss", "val_accuracy", "val_r2")})

    def on_fit_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_exception = lambda self, trainer, exc: self.on_fit_end(trainer)  # noqa: E731
