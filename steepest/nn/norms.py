"""Normalization layers: RMSNorm, and every normalization layer by recipe name.

    make_norm("groupnorm", 64, dims=2)   # GroupNorm(8, 64) for (N, 64, H, W) images
    make_norm("layernorm", 128)          # LayerNorm(128) for (N, 128) features

| name         | dims=1 (N, C) features     | dims=2 (N, C, H, W) images                      |
|--------------|----------------------------|-------------------------------------------------|
| none         | Identity                   | Identity                                        |
| batchnorm    | BatchNorm1d(C)             | BatchNorm2d(C)                                  |
| layernorm    | LayerNorm(C)               | GroupNorm(1, C): over (C, H, W), per-channel affine |
| groupnorm    | GroupNorm(g, C)            | GroupNorm(g, C); g = the largest divisor of C <= groups |
| instancenorm | (error: no spatial axes)   | InstanceNorm2d(C, affine=True)                  |
| rmsnorm      | RMSNorm(C)                 | RMSNorm2d(C): over (C, H, W), per-channel gain  |

For images, layernorm and rmsnorm both normalize each sample over (C, H, W) (the "LN" of Wu & He's
GroupNorm paper), so rmsnorm is layernorm without the centering in either case.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from steepest.errors import ConfigError
from steepest.nn.activations import ACTIVATIONS, make_activation  # noqa: F401  (re-exported for older imports)
from steepest.registry import Registry


def _rms_normalize(x: Tensor, dims: tuple[int, ...], eps: float | None) -> Tensor:
    """x / sqrt(mean(x^2 over dims) + eps), computed in float32 for half/bfloat16 inputs (as torch
    does); eps=None means torch.finfo(x.dtype).eps, torch's default."""
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return (xf * torch.rsqrt(xf.square().mean(dims, keepdim=True) + eps)).to(x.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square normalization over the trailing `normalized_shape` dimensions (Zhang &
    Sennrich 2019, used by LLaMA and T5): no centering, no bias.

        y = x / sqrt(mean(x^2) + eps) * g

    Same signature, defaults and outputs as torch.nn.RMSNorm (eps=None: the input dtype's machine
    epsilon); LLaMA (Touvron et al. 2023) uses RMSNorm(dim, eps=1e-6).

    >>> [round(v, 4) for v in RMSNorm(4)(torch.tensor([2.0, -2.0, 2.0, -2.0])).tolist()]
    [1.0, -1.0, 1.0, -1.0]
    """

    def __init__(self, normalized_shape: int | tuple[int, ...] | list[int], eps: float | None = None,
                 elementwise_affine: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        y = _rms_normalize(x, tuple(range(-len(self.normalized_shape), 0)), self.eps)
        return y * self.weight if self.weight is not None else y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class RMSNorm2d(nn.Module):
    """RMSNorm for images (N, C, H, W): each sample over (C, H, W), then a per-channel gain --
    GroupNorm(1, C) without the mean subtraction and the bias.

        y[n, c] = x[n, c] / sqrt(mean_{c,h,w}(x[n]^2) + eps) * g[c]
    """

    def __init__(self, num_channels: int, eps: float | None = 1e-5, affine: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_channels, self.eps = num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels, device=device, dtype=dtype)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        y = _rms_normalize(x, tuple(range(1, x.dim())), self.eps)
        return y * self.weight.view(-1, *[1] * (x.dim() - 2)) if self.weight is not None else y

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


def largest_divisor(width: int, preferred: int = 8) -> int:
    """The largest group count <= `preferred` that divides `width` (GroupNorm needs C % G == 0)."""
    return next(g for g in range(min(preferred, width), 0, -1) if width % g == 0)


NORMS = Registry("norm")


@NORMS.register("none")
def _none(n: int, dims: int = 1, groups: int = 8) -> nn.Module:
    """No normalization."""
    return nn.Identity()


@NORMS.register("batchnorm")
def _batchnorm(n: int, dims: int = 1, groups: int = 8) -> nn.Module:
    """BatchNorm (Ioffe & Szegedy 2015): per channel over the batch; best with batches >= 16."""
    return nn.BatchNorm1d(n) if dims == 1 else nn.BatchNorm2d(n)


@NORMS.register("layernorm")
def _layernorm(n: int, dims: int = 1, groups: int = 8) -> nn.Module:
    """LayerNorm (Ba et al. 2016): per sample over the features; batch-size independent."""
    return nn.LayerNorm(n) if dims == 1 else nn.GroupNorm(1, n)


@NORMS.register("groupnorm")
def _groupnorm(n: int, dims: int = 1, groups: int = 8) -> nn.Module:
    """GroupNorm (Wu & He 2018): per sample over channel groups; for small batches."""
    return nn.GroupNorm(largest_divisor(n, groups), n)


@NORMS.register("instancenorm")
def _instancenorm(n: int, dims: int = 1, groups: int = 8) -> nn.Module:
    """InstanceNorm (Ulyanov et al. 2016): per sample and channel over H, W; style transfer."""
    if dims == 1:
        raise ConfigError("instancenorm normalizes each channel over its spatial positions and 1-D features have "
                          "none (every value would become 0); use layernorm or batchnorm for features")
    return nn.InstanceNorm2d(n, affine=True)


@NORMS.register("rmsnorm")
def _rmsnorm(n: int, dims: int = 1, groups: int = 8) -> nn.Module:
    """RMSNorm (Zhang & Sennrich 2019): LayerNorm without centering; LLMs."""
    return RMSNorm(n) if dims == 1 else RMSNorm2d(n)


def make_norm(name: str, num_features: int, dims: int = 1, groups: int = 8, key: str = "model.norm") -> nn.Module:
    """The normalization layer `name` for `num_features` features (dims=1: (N, C) or (N, C, L) for
    batchnorm) or channels (dims=2: (N, C, H, W)); `groups` is GroupNorm's preferred group count.

    >>> make_norm("groupnorm", 12, dims=2).num_groups
    6
    """
    record = NORMS.get(name, key)
    if dims not in (1, 2):
        raise ConfigError(f"{key}: dims must be 1 (features) or 2 (images), got {dims}")
    return record.target(int(num_features), dims=dims, groups=groups)
