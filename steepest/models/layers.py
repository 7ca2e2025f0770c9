"""Activation and normalization layers for the model builders, by recipe name (see steepest.nn)."""

from __future__ import annotations

from torch import nn

from steepest.nn.norms import ACTIVATIONS, make_norm


def activation(name: str, key: str = "model.activation") -> nn.Module:
    return ACTIVATIONS.get(name, key).target()


def norm_1d(name: str, width: int, key: str = "model.norm") -> nn.Module:
    return make_norm(name, width, dims=1, key=key)


def norm_2d(name: str, channels: int, key: str = "model.norm") -> nn.Module:
    return make_norm(name, channels, dims=2, key=key)
