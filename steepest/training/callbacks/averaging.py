"""SWA and EMA weight averaging as callbacks (the averaging itself lives in steepest.optim.averaging).

    callbacks:
      - {name: swa, start_fraction: 0.75, every_n_steps: null, swa_lr: null}   # null: once per epoch
      - {name: ema, decay: 0.999}
"""

from __future__ import annotations

from typing import Any

from steepest.optim.averaging import EMA, SWA, recompute_bn
from steepest.training.events import Callback


class _Averaging(Callback):
    """Shared lifecycle: build the averager at fit start, restore a checkpointed one, save it."""

    def __init__(self):
        self.averager: SWA | EMA | None = None
        self._pending: dict[str, Any] | None = None

    def make(self, model) -> SWA | EMA:
        raise NotImplementedError

    def on_fit_start(self, trainer) -> None:
        self.averager = self.make(trainer.unwrapped_model)
        if self._pending is not None:
            self.averager.load_state_dict(self._pending)
            self._pending = None

    def finish(self, trainer) -> None:
        """Load the average into the model (BatchNorm statistics re-estimated) and re-validate."""
        self.averager.copy_to(trainer.unwrapped_model)
        recompute_bn(trainer.model, (x for x, _ in trainer.loader.batches(0)))
        trainer.evaluate("val")

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averager.state_dict() if self.averager else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state.get("averaged")
        if self.averager is not None and self._pending is not None:
            self.averager.load_state_dict(self._pending)
            self._pending = None


class StochasticWeightAveraging(_Averaging):
    """Average the weights every `every_n_steps` (default: every epoch) once `start_fraction` of the
    step budget has passed, optionally at a constant `swa_lr`; at the end, load the average and
    recompute BatchNorm statistics over the training data."""

    name = "swa"

    def __init__(self, start_fraction: float = 0.75, every_n_steps: int | None = None, swa_lr: float | None = None):
        super().__init__()
        if not 0 <= start_fraction < 1:
            raise ValueError(f"start_fraction must be in [0, 1), got {start_fraction}")
        self.start_fraction, self.every_n_steps, self.swa_lr = start_fraction, every_n_steps, swa_lr

    @property
    def swa(self) -> SWA | None:
        return self.averager

    def make(self, model) -> SWA:
        return SWA(model)

    def _start_step(self, trainer) -> int:
        return int(self.start_fraction * trainer.total_steps)

    def on_step_start(self, trainer, batches) -> None:
        if self.swa_lr is not None and trainer.state.step >= self._start_step(trainer):
            for group in trainer.optimizer.param_groups:
                group["lr"] = self.swa_lr

    def on_step_end(self, trainer, output) -> None:
        every = self.every_n_steps or trainer.steps_per_epoch
        since = trainer.state.step - self._start_step(trainer)
        if since > 0 and since % every == 0:
            self.averager.update(trainer.unwrapped_model)

    def on_fit_end(self, trainer) -> None:
        if self.averager is not None and self.averager.n_averaged > 0:
            self.finish(trainer)


class ExponentialMovingAverage(_Averaging):
    """Keep w_ema = decay * w_ema + (1 - decay) * w after every step; load it into the model at the end."""

    name = "ema"

    def __init__(self, decay: float = 0.999, apply_at_end: bool = True):
        super().__init__()
        self.decay, self.apply_at_end = decay, apply_at_end

    @property
    def ema(self) -> EMA | None:
        return self.averager

    def make(self, model) -> EMA:
        return EMA(model, self.decay)

    def on_step_end(self, trainer, output) -> None:
        self.averager.update(trainer.unwrapped_model)

    def on_fit_end(self, trainer) -> None:
        if self.apply_at_end and self.averager is not None:
            self.finish(trainer)
