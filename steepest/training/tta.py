"""Test-time augmentation: predict from an image and its mirror image together.

At evaluation, an image classifier sees each image x and its horizontal mirror flip(x) in one
forward pass of 2N images, and predicts the average of the two probability vectors:

    p(x) = (softmax(f(x)) + softmax(f(flip(x)))) / 2,      outputs = log p(x)

The outputs are log-probabilities, so argmax, accuracy and F1 read them as logits, and the loss
(cross entropy of log p, label smoothing included) is the loss of the averaged prediction. Training
batches go through the ordinary rule (`steepest.training.batch.forward_batch`) unchanged. Mirroring
helps where the classes are mirror-symmetric (clothes, CIFAR objects: Krizhevsky et al. 2012, Page
2018, Jordan 2024's airbench) and hurts where they are not (digits, text).

It is a Trainer `forward` rule, so the model, its weights and their names are untouched (DDP and
torch.compile wrap it as they wrap any model). Recipe form: `trainer.tta: hflip`.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    >>> x, y = torch.randn(2, 1, 2, 2), torch.tensor([0, 2])
    >>> out, loss = hflip_forward(model, (x, y), torch.nn.functional.cross_entropy)
    >>> torch.allclose(out.exp(), (model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)) / 2)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from steepest.errors import DataError
from steepest.training.batch import forward_batch, logits_of

TTA_MODES = ("none", "hflip")


def hflip_forward(model: nn.Module, batch: Any, loss_fn: Callable, target_key: str = "labels") -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, loss) of an (images, target) batch: the ordinary forward while the model trains,
    the mirror-averaged log-probabilities in evaluation (see the module docstring)."""
    if model.training:
        return forward_batch(model, batch, loss_fn, target_key)
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor) and batch[0].dim() == 4):
        raise DataError("test-time flips need (images (N, C, H, W), target) batches")
    x, y = batch
    probs = logits_of(model(torch.cat([x, x.flip(-1)]))).float().softmax(-1)
    log_p = ((probs[: len(x)] + probs[len(x):]) / 2).log()
    return log_p, loss_fn(log_p, y)


def tta_forward(mode: str) -> Callable | None:
    """The Trainer's `forward` rule for `trainer.tta` (None: the ordinary rule)."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    return hflip_forward if mode == "hflip" else None
