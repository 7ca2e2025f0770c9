"""The one reduction helper every functional loss shares."""

from __future__ import annotations

from torch import Tensor


def reduce(x: Tensor, reduction: str) -> Tensor:
    """mean, sum or none (per element) of a tensor of per-sample losses."""
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
