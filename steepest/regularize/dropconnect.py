"""DropConnect (Wan et al. 2013, "Regularization of Neural Networks using DropConnect"): drop
*weights*, not activations.

In training each weight is kept with probability 1 - p and the kept ones are scaled by 1 / (1 - p)
(inverted scaling, as nn.Dropout does for activations), with a fresh mask every forward pass:

    y = x (W * M / (1 - p))^T + b,   M_ij ~ Bernoulli(1 - p)

so E[W * M / (1 - p)] = W and evaluation uses the full weights (the expectation; the paper's
Gaussian moment-matching inference is not implemented). Gradients reach only the kept weights.
One mask per batch by default; `per_sample=True` draws one mask per sample (the paper's setting)
and runs a batched matmul, at the cost of an (N, out, in) weight tensor.

The reference code in the book masks the *inputs*, which is dropout; this is the real thing.

    >>> layer = DropConnectLinear(4, 2, p=0.5)
    >>> layer.eval()(torch.ones(1, 4)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _check_p(p: float) -> float:
    if not 0 <= p < 1:
        raise ValueError(f"DropConnect p must be in [0, 1), got {p}")
    return float(p)


def drop_weights(weight: Tensor, p: float, generator: torch.Generator | None = None, batch: int | None = None) -> Tensor:
    """weight * M / (1 - p) with M ~ Bernoulli(1 - p) of weight's shape (or (batch, *weight.shape)).

    The mask is `torch.rand(shape) >= p`, drawn on the weight's device from `generator` (which must
    live there) or, when None, from the global RNG -- like nn.Dropout, so the trainer's seeding and
    checkpointed RNG state cover it."""
    shape = weight.shape if batch is None else (batch, *weight.shape)
    keep = torch.rand(shape, generator=generator, device=weight.device) >= p
    return weight * keep / (1 - p)


class DropConnectLinear(nn.Linear):
    """nn.Linear with DropConnect on its weight (the bias is not dropped). Same parameters and
    state_dict keys as nn.Linear, so checkpoints move freely between the two."""

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True, per_sample: bool = False,
                 generator: torch.Generator | None = None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.p, self.per_sample, self.generator = _check_p(p), per_sample, generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        if not self.per_sample or x.dim() < 2:
            return F.linear(x, drop_weights(self.weight, self.p, self.generator), self.bias)
        n = x.shape[0]
        w = drop_weights(self.weight, self.p, self.generator, batch=n)  # (N, out, in)
        y = torch.bmm(x.reshape(n, -1, self.in_features), w.transpose(1, 2)).reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}" + (", per_sample=True" if self.per_sample else "")


class DropConnectConv2d(nn.Conv2d):
    """nn.Conv2d with DropConnect on its kernel (one mask per batch)."""

    def __init__(self, *args, p: float = 0.5, generator: torch.Generator | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.p, self.generator = _check_p(p), generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return self._conv_forward(x, self.weight, self.bias)
        return self._conv_forward(x, drop_weights(self.weight, self.p, self.generator), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"


def _swap(old: nn.Module, p: float, per_sample: bool, generator: torch.Generator | None) -> nn.Module:
    """A DropConnect twin of `old` that shares its Parameter objects (so an optimizer built before
    the swap still updates them, and no weights are copied)."""
    if type(old) is nn.Linear:
        new = DropConnectLinear(old.in_features, old.out_features, p, bias=old.bias is not None, per_sample=per_sample,
                                generator=generator, device="meta")
    elif type(old) is nn.Conv2d:
        if per_sample:
            raise ValueError("per-sample DropConnect is only implemented for nn.Linear")
        new = DropConnectConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                                old.groups, old.bias is not None, old.padding_mode, p=p, generator=generator, device="meta")
    else:
        raise ValueError(f"no DropConnect version of {type(old).__name__} (supported: Linear, Conv2d)")
    new.weight, new.bias = old.weight, old.bias
    new.train(old.training)
    return new


def apply_dropconnect(model: nn.Module, p: float = 0.5, layer_types: tuple[type[nn.Module], ...] = (nn.Linear,),
                      skip_last: bool = True, per_sample: bool = False,
                      generator: torch.Generator | None = None) -> nn.Module:
    """Swap every layer whose type is exactly one of `layer_types` (nn.Linear, nn.Conv2d) for its
    DropConnect version, in place, sharing the parameters. The last such layer (the output layer)
    is left alone unless `skip_last=False`. Subclasses are not swapped: nn.MultiheadAttention's
    out_proj, for one, is never called as a module, so masking it would silently do nothing.
    Returns the model (or the new layer when `model` itself is swapped).

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> type(apply_dropconnect(net, 0.3)[0]).__name__
    'DropConnectLinear'
    """
    _check_p(p)
    targets = [(name, m) for name, m in model.named_modules() if type(m) in layer_types]
    if skip_last and targets:
        targets = targets[:-1]
    for name, old in targets:
        new = _swap(old, p, per_sample, generator)
        if not name:
            return new
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    return model
