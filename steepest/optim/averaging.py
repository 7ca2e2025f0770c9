"""Weight averaging: SWA (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better
Generalization") and an exponential moving average (EMA) of the weights.

    SWA:  w_swa = (w_1 + ... + w_n) / n over snapshots taken every `every_n_steps` steps (one
          cycle of a cyclic schedule, or an epoch) once `start_fraction` of the `total_steps`
          have passed (0.75 by default, as in the SWA paper's schedules, Izmailov et al. 2018); BatchNorm statistics are not
          averages of anything, so they are recomputed with one pass over the training data.
    EMA:  w_ema = decay * w_ema + (1 - decay) * w after every step (one foreach lerp on the
          device, no host sync); `warmup=True` uses decay_t = min(decay, (1 + t) / (10 + t)).

Both keep the average in a copy of the model (`averaged_model`) built on
`torch.optim.swa_utils.AveragedModel`, and checkpoint with `state_dict`/`load_state_dict`.

    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> swa = SWA(model, total_steps=100)                  # averages from step 75 on
    >>> [swa.update(model, step) for step in (10, 75, 76)]
    [False, True, True]
    >>> swa.n_averaged
    2
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class _Averager:
    def __init__(self, model: nn.Module, averaged: AveragedModel):
        self.model, self.averaged = model, averaged

    @property
    def averaged_model(self) -> nn.Module:
        """The model holding the averaged weights (an nn.Module to evaluate or save)."""
        return self.averaged.module

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged)  # a host sync: for logging, not for the hot path

    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged parameters and buffers into `model`."""
        model.load_state_dict(self.averaged.module.state_dict())

    def recompute_bn(self, batches: Iterable[Any]) -> bool:
        """Re-estimate the averaged model's BatchNorm statistics over `batches` (see `recompute_bn`)."""
        return recompute_bn(self.averaged_model, batches)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)


class SWA(_Averager):
    """Stochastic weight averaging: an equal-weight average of snapshots from the last part of training."""

    def __init__(self, model: nn.Module, total_steps: int | None = None, start_fraction: float = 0.75, every_n_steps: int = 1):
        if not 0 <= start_fraction < 1 or every_n_steps < 1:
            raise ValueError(f"SWA needs 0 <= start_fraction < 1 and every_n_steps >= 1, got {start_fraction}, {every_n_steps}")
        self.total_steps, self.start_fraction, self.every_n_steps = total_steps, start_fraction, every_n_steps
        super().__init__(model, AveragedModel(model, use_buffers=False))

    @property
    def start_step(self) -> int:
        return int(self.start_fraction * self.total_steps) if self.total_steps else 0

    def due(self, step: int) -> bool:
        """Whether `step` takes a snapshot: at or after the start, every `every_n_steps`."""
        return step >= self.start_step and (step - self.start_step) % self.every_n_steps == 0

    @torch.no_grad()
    def update(self, model: nn.Module | None = None, step: int | None = None) -> bool:
        """Average in `model`'s weights when `step` is due (always when no step is given); returns whether it did."""
        if step is not None and not self.due(step):
            return False
        self.averaged.update_parameters(model if model is not None else self.model)
        return True


class EMA(_Averager):
    """Exponential moving average of the weights (and a copy of the buffers), starting from the model's
    weights at the first update."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self._decay_now = decay
        super().__init__(model, AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True))

    def _lerp(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        """Called once per (device, dtype) group: float tensors are averaged; integer buffers (a
        BatchNorm's num_batches_tracked) are counts, not weights, so they are copied."""
        if averaged[0].is_floating_point() or averaged[0].is_complex():
            torch._foreach_lerp_(averaged, current, 1 - self._decay_now)
        else:
            torch._foreach_copy_(averaged, current)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module | None = None, step: int | None = None) -> None:
        """w_ema <- decay_t w_ema + (1 - decay_t) w; `step` (default: the number of updates so far) drives the warmup."""
        self._decay_now = self.decay_at(self.updates if step is None else step)
        self.averaged.update_parameters(model if model is not None else self.model)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {**self.averaged.state_dict(), "ema_updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.updates = int(state.pop("ema_updates", 0))
        self.averaged.load_state_dict(state)


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable[Any]) -> bool:
    """Reset and re-estimate every BatchNorm's running statistics with one pass over `batches`
    (input tensors, or (input, target) pairs; moved to the model's device). Returns False when the
    model has no BatchNorm layers. The model's train/eval mode is restored."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: an exact mean over the pass
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model(x.to(device) if isinstance(x, torch.Tensor) else x)
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
    return True
