"""Metric-learning losses on embeddings: contrastive pairs and triplets (with batch-hard mining)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from steepest.losses._reduce import reduce


def contrastive(a: Tensor, b: Tensor, similar: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun 2006), d = ||a - b||, y = 1 for similar pairs:

        l = y d^2 + (1 - y) max(0, margin - d)^2

    >>> a, b = torch.zeros(2, 2), torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    >>> contrastive(a, b, torch.tensor([1, 0]), margin=1.0, reduction="none")
    tensor([25.0000,  0.2500])
    """
    d = torch.linalg.vector_norm(a - b, dim=-1)
    y = similar.reshape(d.shape).to(d.dtype)
    return reduce(y * d.square() + (1 - y) * F.relu(margin - d).square(), reduction)


def triplet(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """Triplet loss (Schroff et al. 2015, FaceNet): the positive closer than the negative by a margin,

        l = max(0, ||a - p|| - ||a - n|| + margin)

    (torch's TripletMarginLoss with eps = 0).

    >>> float(triplet(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.5]]), margin=1.0))
    0.5
    """
    d_ap = torch.linalg.vector_norm(anchor - positive, dim=-1)
    d_an = torch.linalg.vector_norm(anchor - negative, dim=-1)
    return reduce(F.relu(d_ap - d_an + margin), reduction)


def batch_hard_triplet(embeddings: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017): each anchor i with its farthest
    positive and nearest negative in the batch,

        l_i = max(0, max_{j: y_j = y_i, j != i} d_ij - min_{k: y_k != y_i} d_ik + margin)

    averaged over anchors that have both (0, still attached to the graph, when none do).

    >>> e, y = torch.tensor([[0.0], [1.0], [1.5]]), torch.tensor([0, 0, 1])
    >>> float(batch_hard_triplet(e, y, margin=1.0))  # anchors 0 and 1: (1 - 1.5 + 1 + 1 - 0.5 + 1) / 2
    1.0
    """
    d = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives = same & ~eye
    hardest_pos = torch.where(positives, d, torch.zeros_like(d)).amax(1)
    hardest_neg = torch.where(~same, d, torch.full_like(d, float("inf"))).amin(1)
    valid = (positives.any(1) & (~same).any(1)).to(d.dtype)
    losses = torch.where(valid > 0, F.relu(hardest_pos - hardest_neg + margin), torch.zeros_like(hardest_pos))
    return losses.sum() / valid.sum().clamp(min=1)  # no host sync on the number of valid anchors
