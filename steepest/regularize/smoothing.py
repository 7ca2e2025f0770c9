"""Label smoothing as soft targets (Szegedy et al. 2016, "Rethinking the Inception Architecture").

    q = (1 - eps) * onehot(y) + eps / K

Cross-entropy against q equals torch's `F.cross_entropy(logits, y, label_smoothing=eps)`:

    -sum_k q_k log p_k = (1 - eps) * NLL(y) + eps * mean_k(-log p_k)

so mixup/CutMix can fold smoothing into the targets they mix, and the loss stays plain soft-target CE.
"""

from __future__ import annotations

import torch
from torch import Tensor


def smooth_targets(y: Tensor, num_classes: int, eps: float = 0.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """(N, K) probabilities from class indices `y` (N,) -- or from soft targets (N, K) -- smoothed by `eps`.

    >>> smooth_targets(torch.tensor([1]), 4, 0.2)
    tensor([[0.0500, 0.8500, 0.0500, 0.0500]])
    """
    if not 0 <= eps < 1:
        raise ValueError(f"label smoothing eps must be in [0, 1), got {eps}")
    if y.is_floating_point():
        if y.dim() != 2 or y.shape[1] != num_classes:
            raise ValueError(f"soft targets must have shape (N, {num_classes}), got {tuple(y.shape)}")
        q = y.to(dtype)
    else:
        if y.dim() != 1:
            raise ValueError(f"class indices must have shape (N,), got {tuple(y.shape)}")
        # scatter, not F.one_hot: one_hot validates the labels with a host sync on accelerators
        q = torch.zeros(len(y), num_classes, dtype=dtype, device=y.device).scatter_(1, y.long()[:, None], 1.0)
    return q * (1 - eps) + eps / num_classes if eps else q
