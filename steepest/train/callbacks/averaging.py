"""SWA and EMA weight averaging as callbacks (the averaging itself lives in steepest.optim.averaging).

    callbacks:
      - {name: swa, start_fraction: 0.75, every_n_steps: null, swa_lr: null}   # null: once per epoch
      - {name: ema, decay: 0.999}
"""

from __future__ import annotations

from typing import Any

from steepest.optim.averaging import EMA, SWA, recompute_bn
from steepest.train.callbacks._registry import CALLBACKS
from steepest.train.events import Callback


@CALLBACKS.register("swa")
class StochasticWeightAveraging(Callback):
    """Average the weights every `every_n_steps` (default: every epoch) once `start_fraction` of the
    step budget has passed, optionally at a constant `swa_lr`; at the end, load the average and
    recompute BatchNorm statistics over the training data."""

    name = "swa"

    def __init__(self, start_fraction: float = 0.75, every_n_steps: int | None = None, swa_lr: float | None = None):
        if not 0 <= start_fraction < 1:
            raise ValueError(f"start_fraction must be in [0, 1), got {start_fraction}")
        self.start_fraction, self.every_n_steps, self.swa_lr = start_fraction, every_n_steps, swa_lr
        self.swa: SWA | None = None
        self._pending: dict[str, Any] | None = None

    def _start_step(self, trainer) -> int:
        return int(self.start_fraction * trainer.total_steps)

    def on_fit_start(self, trainer) -> None:
        self.swa = SWA(trainer.unwrapped_model)
        if self._pending is not None:
            self.swa.load_state_dict(self._pending)
            self._pending = None

    def on_step_start(self, trainer, batches) -> None:
        if self.swa_lr is not None and trainer.state.step >= self._start_step(trainer):
            for group in trainer.optimizer.param_groups:
                group["lr"] = self.swa_lr

    def on_step_end(self, trainer, output) -> None:
        every = self.every_n_steps or trainer.steps_per_epoch
        step = trainer.state.step
        if step > self._start_step(trainer) and (step - self._start_step(trainer)) % every == 0:
            self.swa.update(trainer.unwrapped_model)

    def on_fit_end(self, trainer) -> None:
        if self.swa is None or self.swa.n_averaged == 0:
            return
        self.swa.copy_to(trainer.unwrapped_model)
        recompute_bn(trainer.model, (x for x, _ in trainer.loader.batches(0)))
        trainer.evaluate("val")

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.swa.state_dict() if self.swa else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state.get("averaged")
        if self.swa is not None and self._pending is not None:
            self.swa.load_state_dict(self._pending)
            self._pending = None


@CALLBACKS.register("ema")
class ExponentialMovingAverage(Callback):
    """Keep w_ema = decay * w_ema + (1 - decay) * w after every step; load it into the model at the end."""

    name = "ema"

    def __init__(self, decay: float = 0.999, apply_at_end: bool = True):
        self.decay, self.apply_at_end = decay, apply_at_end
        self.ema: EMA | None = None
        self._pending: dict[str, Any] | None = None

    def on_fit_start(self, trainer) -> None:
        self.ema = EMA(trainer.unwrapped_model, self.decay)
        if self._pending is not None:
            self.ema.load_state_dict(self._pending)
            self._pending = None

    def on_step_end(self, trainer, output) -> None:
        self.ema.update(trainer.unwrapped_model)

    def on_fit_end(self, trainer) -> None:
        if self.apply_at_end and self.ema is not None:
            self.ema.copy_to(trainer.unwrapped_model)
            trainer.evaluate("val")

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.ema.state_dict() if self.ema else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state.get("averaged")
        if self.ema is not None and self._pending is not None:
            self.ema.load_state_dict(self._pending)
            self._pending = None
