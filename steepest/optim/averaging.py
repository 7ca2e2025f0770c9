"""Weight averaging: SWA (Izmailov et al. 2018) and an exponential moving average (EMA) of weights.

Both wrap `torch.optim.swa_utils.AveragedModel`:
    SWA:  w_swa = (w_1 + ... + w_n) / n over snapshots taken every `every_n_steps` after
          `start_fraction` of training (0.75 by default, as in the references), then BatchNorm
          statistics are recomputed with a pass over the training data (they are not averages).
    EMA:  w_ema = decay * w_ema + (1 - decay) * w, every step (on the device, no host sync).

    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> swa = SWA(model); swa.update(model); swa.update(model)
    >>> swa.n_averaged
    2
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class _Averager:
    def __init__(self, model: nn.Module, averaged: AveragedModel):
        self.model, self.averaged = model, averaged

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module | None = None) -> None:
        self.averaged.update_parameters(model or self.model)

    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged parameters and buffers into `model`."""
        model.load_state_dict(self.averaged.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)


class SWA(_Averager):
    def __init__(self, model: nn.Module):
        super().__init__(model, AveragedModel(model, use_buffers=False))


class EMA(_Averager):
    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        super().__init__(model, AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True))


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> bool:
    """Reset and re-estimate every BatchNorm's running statistics with one pass over `batches`
    (inputs only). Returns False when the model has no BatchNorm layers."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: an exact mean over the pass
    was_training = model.training
    model.train()
    for x in batches:
        model(x)
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
    return True
