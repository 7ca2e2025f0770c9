"""Save the whole training state every n steps / epochs, and the best weights by a metric."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from steepest.training.checkpoint import CheckpointManager
from steepest.training.events import Callback
from steepest.training.metrics import improves, metric_mode


class Checkpoint(Callback):
    """The training state every `every_n_steps` steps and `every_n_epochs` epochs (the last `keep_last` kept), the
    best weights by `monitor`, and the state at the end. With `on_interrupt` (one process, the main thread), the
    first Ctrl-C (SIGINT) stops the run after the step in progress with a checkpoint of it, so `--resume`
    continues from there exactly; a second one stops at once (KeyboardInterrupt, as without it)."""

    name = "checkpoint"

    def __init__(self, directory: str | Path, every_n_steps: int | None = None, every_n_epochs: int | None = 1,
                 keep_last: int = 2, keep_best: bool = True, monitor: str = "val_loss", on_interrupt: bool = False):
        self.manager = CheckpointManager(directory, keep_last)
        self.every_n_steps, self.every_n_epochs = every_n_steps, every_n_epochs
        self.keep_best, self.monitor = keep_best, monitor
        self.mode = metric_mode(monitor)
        self.best: float | None = None
        self.last_saved_step = -1
        self.on_interrupt, self.interrupted, self._previous_handler = on_interrupt, False, None

    def on_fit_start(self, trainer) -> None:
        if self.on_interrupt and trainer.world_size == 1 and threading.current_thread() is threading.main_thread():
            self.interrupted = False
            self._previous_handler = signal.signal(signal.SIGINT, self._sigint)

    def _sigint(self, signum, frame) -> None:
        if self.interrupted:  # the second one: at once
            self._restore_handler()
            raise KeyboardInterrupt
        self.interrupted = True
        print("\ninterrupt: stopping after this step with a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

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
        if self.interrupted:  # where a step's checkpoint is taken: resuming from it is the same as from any other
            self.save(trainer)
            self._restore_handler()
            print(f"checkpoint saved at step {trainer.state.step} in {self.manager.dir}; continue with --resume", file=sys.stderr, flush=True)
            raise KeyboardInterrupt

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
        self._restore_handler()
        self.save(trainer)

    def on_exception(self, trainer, exc: BaseException) -> None:
        self._restore_handler()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
