"""Normalization layers: RMSNorm, and recipe names for every normalization layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from steepest.registry import Registry


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * g over the last dimension (Zhang & Sennrich 2019); no centering."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        y = x * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + self.eps).to(x.dtype)
        return y * self.weight if self.weight is not None else y


def _groups(width: int, preferred: int = 8) -> int:
    return next(g for g in range(min(preferred, width), 0, -1) if width % g == 0)


NORMS = Registry("norm")
NORMS.register("none", lambda n, dims=1, groups=8: nn.Identity(), summary="No normalization.")
NORMS.register("batchnorm", lambda n, dims=1, groups=8: (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(n), summary="BatchNorm (Ioffe & Szegedy 2015).")
NORMS.register("layernorm", lambda n, dims=1, groups=8: nn.LayerNorm(n) if dims == 1 else nn.GroupNorm(1, n), summary="LayerNorm (Ba et al. 2016).")
NORMS.register("groupnorm", lambda n, dims=1, groups=8: nn.GroupNorm(_groups(n, groups), n), summary="GroupNorm (Wu & He 2018); batch-size independent.")
NORMS.register("instancenorm", lambda n, dims=1, groups=8: nn.InstanceNorm2d(n, affine=True) if dims == 2 else nn.GroupNorm(n, n),
               summary="InstanceNorm (Ulyanov et al. 2016).")
NORMS.register("rmsnorm", lambda n, dims=1, groups=8: RMSNorm(n) if dims == 1 else nn.GroupNorm(1, n), summary="RMSNorm (Zhang & Sennrich 2019).")


def make_norm(name: str, num_features: int, dims: int = 1, groups: int = 8, key: str = "model.norm") -> nn.Module:
    """The normalization layer `name` for `num_features` features (dims=1) or channels (dims=2)."""
    return NORMS.get(name, key).target(num_features, dims=dims, groups=groups)


ACTIVATIONS = Registry("activation")
for _name, _cls in [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("gelu", nn.GELU), ("silu", nn.SiLU), ("tanh", nn.Tanh),
                    ("sigmoid", nn.Sigmoid), ("elu", nn.ELU), ("identity", nn.Identity)]:
    ACTIVATIONS.register(_name, _cls)
