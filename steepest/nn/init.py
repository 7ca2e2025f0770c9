"""Weight initialization by name.

For a Linear (out, in) or Conv (out, in / groups, *k) weight, fan_in = in * prod(k), fan_out = out * prod(k):

| scheme            | weights                                   | std                          | for          |
|-------------------|-------------------------------------------|------------------------------|--------------|
| xavier_uniform    | U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)) | gain sqrt(2 / (fan_in + fan_out)) | tanh, sigmoid (Glorot & Bengio 2010) |
| xavier_normal     | N(0, std^2)                               | gain sqrt(2 / (fan_in + fan_out)) | tanh, sigmoid |
| kaiming_uniform   | U(-a, a), a = sqrt(3) std                 | gain / sqrt(fan), gain = sqrt(2) for ReLU | ReLU (He et al. 2015) |
| kaiming_normal    | N(0, std^2)                               | gain / sqrt(fan), fan = fan_in or fan_out (mode) | ReLU |
| truncated_normal  | N(0, std^2) cut at +-2 std                | 0.880 std (the cut removes the tails) | transformers (std 0.02) |
| he_truncated_normal | N(0, s^2) cut at +-2 s, s = He std / 0.880 | gain / sqrt(fan) (after the cut) | ReLU (Keras' he_normal) |
| normal            | N(0, std^2)                               | std (0.01: "small random" init) | demonstrations |
| orthogonal        | W W^T = gain^2 I (or W^T W), W = (out, fan_in) | gain / sqrt(max(fan_in, out)) | deep linear/RNN nets (Saxe et al. 2014) |
| zeros             | 0                                         | 0: every unit identical, a symmetry gradient descent cannot break | the demonstration |
| default           | PyTorch's own (kaiming_uniform with a = sqrt(5)); biases untouched |                | |

`initialize(model, scheme, **kwargs)` applies a scheme to every Linear/Conv weight and zeroes the
biases; the bias rules (output bias, LSTM gates, ReLU bias) are in steepest.nn.bias (a recipe's
`model.init: {scheme: kaiming_normal, relu_bias: 0.01}` sets the small positive ReLU bias too).

    >>> net = initialize(nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)), "xavier_normal", nonlinearity="tanh")
    >>> float(net[0].bias.detach().abs().max())
    0.0
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from steepest.errors import ConfigError
from steepest.registry import Registry, accepted_arguments

WEIGHTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)
TRUNCATION_STD = 0.8796256610342398  # std of N(0, 1) truncated to [-2, 2]


def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear or Conv weight, as torch.nn.init computes them."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _gain(gain: float | None, nonlinearity: str, param: float | None = None) -> float:
    return float(gain) if gain is not None else nn.init.calculate_gain(nonlinearity, param)


INITS = Registry("init")


@INITS.register("xavier_uniform")
def xavier_uniform(w: Tensor, gain: float | None = None, nonlinearity: str = "linear") -> Tensor:
    """Glorot uniform: U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)); gain from `nonlinearity` if not given."""
    return nn.init.xavier_uniform_(w, gain=_gain(gain, nonlinearity))


@INITS.register("xavier_normal")
def xavier_normal(w: Tensor, gain: float | None = None, nonlinearity: str = "linear") -> Tensor:
    """Glorot normal: N(0, gain^2 2 / (fan_in + fan_out)); use nonlinearity='tanh' (gain 5/3) for tanh nets."""
    return nn.init.xavier_normal_(w, gain=_gain(gain, nonlinearity))


@INITS.register("kaiming_uniform")
def kaiming_uniform(w: Tensor, mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> Tensor:
    """He uniform: U(-b, b), b = gain sqrt(3 / fan); fan_in keeps forward variance, fan_out backward."""
    return nn.init.kaiming_uniform_(w, a=a, mode=mode, nonlinearity=nonlinearity)


@INITS.register("kaiming_normal")
def kaiming_normal(w: Tensor, mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> Tensor:
    """He normal: N(0, gain^2 / fan), gain = sqrt(2) for ReLU (sqrt(2 / (1 + a^2)) for leaky_relu)."""
    return nn.init.kaiming_normal_(w, a=a, mode=mode, nonlinearity=nonlinearity)


@INITS.register("truncated_normal")
def truncated_normal(w: Tensor, std: float = 0.02, mean: float = 0.0) -> Tensor:
    """N(mean, std^2) redrawn outside mean +- 2 std (PyTorch's convention: std before the cut)."""
    return nn.init.trunc_normal_(w, mean=mean, std=std, a=mean - 2 * std, b=mean + 2 * std)


@INITS.register("he_truncated_normal")
def he_truncated_normal(w: Tensor, mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> Tensor:
    """He (fan-scaled) truncated normal: N(0, s^2) cut at +-2 s, with s = (gain / sqrt(fan)) / 0.8796
    so that the std *after* the cut is He's gain / sqrt(fan) (the variance-scaling initializer of
    Keras' he_normal and TensorFlow; He et al. 2015 for the scale)."""
    fan_in, fan_out = fans(w)
    fan = fan_in if mode == "fan_in" else fan_out
    s = nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan) / TRUNCATION_STD
    return nn.init.trunc_normal_(w, mean=0.0, std=s, a=-2 * s, b=2 * s)


@INITS.register("normal")
def normal(w: Tensor, std: float = 0.01, mean: float = 0.0) -> Tensor:
    """N(mean, std^2) with a fixed std (0.01: small enough to make deep nets' activations vanish)."""
    return nn.init.normal_(w, mean=mean, std=std)


@INITS.register("orthogonal")
def orthogonal(w: Tensor, gain: float = 1.0) -> Tensor:
    """A (semi-)orthogonal matrix times `gain` (Saxe et al. 2014): all singular values equal gain."""
    return nn.init.orthogonal_(w, gain=gain)


@INITS.register("zeros")
def zeros(w: Tensor) -> Tensor:
    """All zeros: the symmetry problem -- every hidden unit computes and learns the same thing."""
    return nn.init.zeros_(w)


@INITS.register("default")
def default(w: Tensor) -> Tensor:
    """PyTorch's own initialization, left as it is (biases too)."""
    return w


@torch.no_grad()
def initialize(model: nn.Module, scheme: str = "default", zero_bias: bool = True, key: str = "model.init",
               **kwargs: Any) -> nn.Module:
    """Apply `scheme` to every Linear/Conv weight of `model` and set their biases to zero (unless
    `zero_bias=False`); `kwargs` are the scheme's own (gain, nonlinearity, mode, a, std, mean).
    'default' leaves the model untouched. Returns the model. Unknown schemes or arguments raise
    ConfigError naming `key`."""
    fn = INITS.get(scheme, key).target
    params, _ = accepted_arguments(fn)
    unknown = sorted(set(kwargs) - (set(params) - {"w"}))
    if unknown:
        allowed = ", ".join(p for p in params if p != "w") or "none"
        raise ConfigError(f"{key}: scheme '{scheme}' takes no argument '{unknown[0]}'; its arguments: {allowed}")
    if scheme == "default":
        return model
    for m in model.modules():
        if isinstance(m, WEIGHTED):
            fn(m.weight, **kwargs)
            if zero_bias and m.bias is not None:
                m.bias.zero_()
    return model


def expected_std(scheme: str, fan_in: int, fan_out: int, receptive_field: int = 1, **kwargs: Any) -> float:
    """The standard deviation of the weights `scheme` draws for a layer with these fans (checks and
    the doctor compare it with the empirical std); `receptive_field` = prod(kernel size) for convs
    (orthogonal works on the flattened (out, fan_in) matrix). kwargs as for `initialize`."""
    get = kwargs.get
    if scheme.startswith("xavier"):
        return _gain(get("gain"), get("nonlinearity", "linear")) * math.sqrt(2 / (fan_in + fan_out))
    if scheme.startswith("kaiming"):
        fan = fan_in if get("mode", "fan_in") == "fan_in" else fan_out
        return nn.init.calculate_gain(get("nonlinearity", "relu"), get("a", 0.0)) / math.sqrt(fan)
    if scheme == "he_truncated_normal":
        fan = fan_in if get("mode", "fan_in") == "fan_in" else fan_out
        return nn.init.calculate_gain(get("nonlinearity", "relu"), get("a", 0.0)) / math.sqrt(fan)
    if scheme == "truncated_normal":
        return get("std", 0.02) * TRUNCATION_STD
    if scheme == "normal":
        return get("std", 0.01)
    if scheme == "orthogonal":
        return get("gain", 1.0) / math.sqrt(max(fan_in, fan_out // receptive_field))
    if scheme == "zeros":
        return 0.0
    if scheme == "default":  # kaiming_uniform with a = sqrt(5): std = 1 / sqrt(3 fan_in)
        return 1 / math.sqrt(3 * fan_in)
    INITS.get(scheme)
    raise ValueError(f"no expected std for scheme '{scheme}'")
