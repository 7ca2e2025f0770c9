"""DropConnect (Wan et al. 2013): drop *weights*, not activations.

In training every weight is kept with probability 1 - p and rescaled by 1 / (1 - p) (a fresh mask
per forward pass, i.e. per batch); in evaluation the full weights are used, which is the
expectation of the training-time weights.

    y = x (W * M / (1 - p))^T + b,   M_ij ~ Bernoulli(1 - p)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class DropConnectLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True, generator: torch.Generator | None = None):
        super().__init__(in_features, out_features, bias=bias)
        if not 0 <= p < 1:
            raise ValueError(f"DropConnect p must be in [0, 1), got {p}")
        self.p, self.generator = p, generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        keep = torch.rand(self.weight.shape, generator=self.generator, device=self.weight.device) >= self.p
        return F.linear(x, self.weight * keep / (1 - self.p), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"


def apply_dropconnect(model: nn.Module, p: float = 0.5, skip_last: bool = True) -> nn.Module:
    """Replace the model's nn.Linear layers by DropConnectLinear with the same weights (in place).
    The output layer is kept as it is unless `skip_last=False`."""
    linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    if skip_last and linears:
        linears = linears[:-1]
    for name, old in linears:
        new = DropConnectLinear(old.in_features, old.out_features, p, bias=old.bias is not None)
        new.load_state_dict(old.state_dict())
        new.to(old.weight.device, old.weight.dtype)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return model


def set_dropout(model: nn.Module, p: float) -> int:
    """Set every Dropout layer's rate to `p`; returns how many were changed."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = p
            count += 1
    return count


def insert_dropout(model: nn.Sequential, p: float, after: tuple[type, ...] = (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.LeakyReLU)) -> nn.Sequential:
    """A new Sequential with Dropout(p) after each activation (the usual placement: after the
    nonlinearity of hidden layers, never after the output layer)."""
    layers: list[nn.Module] = []
    for m in model:
        layers.append(m)
        if isinstance(m, after):
            layers.append(nn.Dropout(p))
    return nn.Sequential(*layers)
