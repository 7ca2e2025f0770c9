"""Validation every n epochs and/or every n steps (once per step when both fall on the same step)."""

from __future__ import annotations

from steepest.training.events import Callback


class Evaluate(Callback):
    name = "evaluate"

    def __init__(self, every_n_epochs: int | None = 1, every_n_steps: int | None = None):
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self._evaluated_at: int | None = None  # the step of the last evaluation

    def on_step_end(self, trainer, output) -> None:
        if self.every_n_steps and trainer.state.step % self.every_n_steps == 0:
            self._evaluate(trainer)
            trainer.agree_on_stop_now()  # every rank evaluated at this step: a stop decided from it ends the step

    def on_epoch_end(self, trainer) -> None:
        if self.every_n_epochs and trainer.state.epoch % self.every_n_epochs == 0:
            self._evaluate(trainer)

    def _evaluate(self, trainer) -> None:
        """One evaluation per step: an epoch that ends on a step already evaluated (every_n_steps)
        is not evaluated again (the same weights: early stopping would count it as no improvement)."""
        if self._evaluated_at != trainer.state.step:
            self._evaluated_at = trainer.state.step
            trainer.evaluate("val")
