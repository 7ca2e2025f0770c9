"""Optimizers: every algorithm in the references, registered by name.

    >>> import torch, steepest.optim as so
    >>> opt = so.create("adamw", torch.nn.Linear(3, 1), lr=1e-3)
    >>> type(opt).__name__
    'AdamW'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from steepest.optim._registry import OPTIMIZERS


def create(name: str, params_or_model: torch.nn.Module | Iterable[Any], **hyperparameters: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered as `name` over a model's parameters or a list of groups."""
    params = params_or_model.parameters() if isinstance(params_or_model, torch.nn.Module) else params_or_model
    return OPTIMIZERS.build(name, params, **hyperparameters)


__all__ = ["OPTIMIZERS", "create"]
