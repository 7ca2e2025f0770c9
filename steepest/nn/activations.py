"""Activations by recipe name.

Each record's `gain` flag names the nonlinearity that torch.nn.init.calculate_gain (and so the
Kaiming/Xavier schemes) should assume for it; GELU/SiLU/ELU are ReLU-like and use ReLU's sqrt(2).

    >>> make_activation("leaky_relu", negative_slope=0.2)
    LeakyReLU(negative_slope=0.2)
    >>> ACTIVATIONS.get("tanh").flags["gain"]
    'tanh'
"""

from __future__ import annotations

from typing import Any

from torch import nn

from steepest.registry import Registry

ACTIVATIONS = Registry("activation")
ACTIVATIONS.register("relu", nn.ReLU, summary="max(0, x).", gain="relu")
ACTIVATIONS.register("leaky_relu", nn.LeakyReLU, summary="max(0, x) + slope * min(0, x); no dead units.", gain="leaky_relu")
ACTIVATIONS.register("gelu", nn.GELU, summary="x * Phi(x) (Hendrycks & Gimpel 2016); transformers.", gain="relu")
ACTIVATIONS.register("silu", nn.SiLU, summary="x * sigmoid(x) (swish).", gain="relu")
ACTIVATIONS.register("tanh", nn.Tanh, summary="tanh(x); zero-centred, saturates.", gain="tanh")
ACTIVATIONS.register("sigmoid", nn.Sigmoid, summary="1 / (1 + exp(-x)); for gates and binary outputs.", gain="sigmoid")
ACTIVATIONS.register("elu", nn.ELU, summary="x, or alpha (exp(x) - 1) below 0 (Clevert et al. 2016).", gain="relu")
ACTIVATIONS.register("identity", nn.Identity, summary="x (a linear layer).", gain="linear")


def make_activation(name: str, key: str = "model.activation", **kwargs: Any) -> nn.Module:
    """The activation module `name`, built with the record's defaults and `kwargs`."""
    record = ACTIVATIONS.get(name, key)
    return record.target(**{**record.defaults, **kwargs})
