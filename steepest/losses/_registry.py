"""The loss registry: recipe name -> nn.Module class (thin wrapper over a functional loss).

Flags a record may carry:
  task   the task the loss fits ("classification", "regression", "binary", "any")
"""

from __future__ import annotations

import torch

from steepest.registry import Registry

LOSSES = Registry("loss")

LOSSES.register("cross_entropy", torch.nn.CrossEntropyLoss, task="classification",
                summary="Cross-entropy on logits, with optional label smoothing and class weights.")
LOSSES.register("mse", torch.nn.MSELoss, task="regression", summary="Mean squared error.")
