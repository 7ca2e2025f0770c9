"""Weight penalties over a model's parameters: L1, L2 and elastic net. Biases and normalization
parameters are excluded (the same rule as the optimizer's no-decay group)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from steepest.optim.param_groups import no_decay_names


def penalized_parameters(model: nn.Module) -> list[Tensor]:
    """The trainable weights a penalty applies to: not biases, not normalization parameters."""
    skip = no_decay_names(model)
    return [p for n, p in model.named_parameters() if n not in skip and p.requires_grad]


def _total(terms: list[Tensor], model: nn.Module) -> Tensor:
    if not terms:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return sum(terms[1:], terms[0])


def l1_penalty(model: nn.Module) -> Tensor:
    """sum |w| over the penalized weights (Tibshirani 1996, the lasso): drives weights to exactly 0.

    >>> m = nn.Linear(2, 1); _ = nn.init.constant_(m.weight, -0.5)
    >>> l1_penalty(m).item()
    1.0
    """
    return _total([p.abs().sum() for p in penalized_parameters(model)], model)


def l2_penalty(model: nn.Module) -> Tensor:
    """(1/2) sum w^2 over the penalized weights (ridge; its gradient is w, so lambda * l2 is weight
    decay lambda for plain SGD).

    Convention: the recipe key `l2` is lambda in (lambda/2) sum w^2 over weights only (biases and
    normalization parameters excluded), so lambda equals SGD's weight_decay; a penalty written
    lambda_2 sum p^2 over all parameters is, on the weights, l2 = 2 lambda_2.

    >>> m = nn.Linear(2, 1); _ = nn.init.constant_(m.weight, 2.0)
    >>> l2_penalty(m).item()
    4.0
    """
    return _total([p.square().sum() for p in penalized_parameters(model)], model) * 0.5


def elastic_net(model: nn.Module, l1: float = 1e-4, l2: float = 1e-4) -> Tensor:
    """Elastic net (Zou & Hastie 2005): l1 sum |w| + l2 (1/2) sum w^2. Add it to the data loss.

    >>> m = nn.Linear(2, 1); _ = nn.init.constant_(m.weight, 1.0)
    >>> elastic_net(m, l1=0.1, l2=1.0).item()
    1.2000000476837158
    """
    return l1 * l1_penalty(model) + l2 * l2_penalty(model)
