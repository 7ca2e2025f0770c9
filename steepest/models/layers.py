"""Activation and normalization layers by recipe name (shared by the model builders)."""

from __future__ import annotations

from torch import nn

from steepest.errors import unknown_choice

ACTIVATION_LAYERS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def activation(name: str, key: str = "model.activation") -> nn.Module:
    if name not in ACTIVATION_LAYERS:
        raise unknown_choice(key, name, ACTIVATION_LAYERS, "activation")
    return ACTIVATION_LAYERS[name]()


def norm_1d(name: str, width: int, key: str = "model.norm") -> nn.Module:
    layers = {
        "none": lambda: nn.Identity(),
        "batchnorm": lambda: nn.BatchNorm1d(width),
        "layernorm": lambda: nn.LayerNorm(width),
        "rmsnorm": lambda: nn.RMSNorm(width),
        "groupnorm": lambda: nn.GroupNorm(_groups(width), width),
    }
    if name not in layers:
        raise unknown_choice(key, name, layers, "norm")
    return layers[name]()


def norm_2d(name: str, channels: int, key: str = "model.norm") -> nn.Module:
    layers = {
        "none": lambda: nn.Identity(),
        "batchnorm": lambda: nn.BatchNorm2d(channels),
        "groupnorm": lambda: nn.GroupNorm(_groups(channels), channels),
        "instancenorm": lambda: nn.InstanceNorm2d(channels, affine=True),
        "layernorm": lambda: nn.GroupNorm(1, channels),
    }
    if name not in layers:
        raise unknown_choice(key, name, layers, "norm")
    return layers[name]()


def _groups(width: int, preferred: int = 8) -> int:
    for g in range(min(preferred, width), 0, -1):
        if width % g == 0:
            return g
    return 1
