"""A multilayer perceptron: Linear -> norm -> activation -> dropout, repeated, then a Linear head."""

from __future__ import annotations

import math

from torch import nn

from steepest.models.layers import activation as make_activation
from steepest.models.layers import norm_1d


class MLP(nn.Sequential):
    """Fully connected network; inputs of any shape are flattened.

    >>> MLP((64,), 10, hidden=[32]).forward(__import__("torch").zeros(2, 64)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        hidden: list[int] = (64, 32),  # type: ignore[assignment]
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
    ):
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), norm_1d(norm, h), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_outputs))
        super().__init__(*[m for m in layers if not isinstance(m, nn.Identity)])
