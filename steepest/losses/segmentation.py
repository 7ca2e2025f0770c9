"""Overlap losses for segmentation: soft Dice (Milletari et al. 2016, V-Net) and BCE + Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from steepest.losses.classification import bce_with_logits


def dice(logits: Tensor, target: Tensor, smooth: float = 1.0, ignore_index: int = -100) -> Tensor:
    """Soft Dice loss on probabilities, averaged over classes:

        D_c = 1 - (2 sum_i p_ic y_ic + s) / (sum_i p_ic + sum_i y_ic + s)

    with the sums over the batch and all spatial positions. Probabilities: softmax over classes
    when the target holds class indices (N, d1, ...) for logits (N, K, d1, ...); sigmoid per
    channel otherwise (binary masks (N, 1, ...) or (N,), multilabel (N, K, ...) 0/1 masks).

    Pixels whose target is `ignore_index` (-100, torch's convention; a class index, or an element
    of a 0/1 mask) are left out of every sum: neither their p nor their y counts. A class whose
    denominator is 0 (every pixel ignored, with s = 0) scores 0, so a batch with every target
    ignored gives 0 with a zero gradient rather than 0/0.

    >>> round(float(dice(torch.full((1, 1, 2, 2), 20.0), torch.ones(1, 1, 2, 2))), 6)
    0.0
    >>> round(float(dice(torch.full((1, 1, 2), 20.0), torch.tensor([[[1.0, -100.0]]]), smooth=0.0)), 6)
    0.0
    """
    if target.dim() == logits.dim() - 1 and logits.dim() >= 2 and logits.shape[1] > 1:
        p = torch.softmax(logits, dim=1)
        target = target.long()
        keep = (target != ignore_index).unsqueeze(1)
        y = F.one_hot(target.where(keep.squeeze(1), 0), logits.shape[1]).movedim(-1, 1).to(p.dtype)
    else:
        p = torch.sigmoid(logits)
        y = target.reshape(logits.shape).to(p.dtype)
        keep = y != ignore_index
        if p.dim() == 1:
            p, y, keep = p[:, None], y[:, None], keep[:, None]
    p, y = p * keep, y * keep
    dims = (0, *range(2, p.dim()))
    inter, total = (p * y).sum(dims), p.sum(dims) + y.sum(dims)
    denominator = total + smooth
    per_class = 1 - (2 * inter + smooth) / denominator.where(denominator > 0, 1)
    return per_class.where(denominator > 0, 0).mean()


def bce_dice(logits: Tensor, target: Tensor, bce_weight: float = 0.5, smooth: float = 1.0) -> Tensor:
    """w BCE + (1 - w) Dice for binary or multilabel masks: BCE for per-pixel calibration, Dice for
    overlap under class imbalance.

    >>> z, y = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    >>> round(float(bce_dice(z, y, bce_weight=1.0)), 4)
    0.6931
    """
    if not 0 <= bce_weight <= 1:
        raise ValueError(f"bce_weight must be in [0, 1], got {bce_weight}")
    return bce_weight * bce_with_logits(logits, target) + (1 - bce_weight) * dice(logits, target, smooth)
