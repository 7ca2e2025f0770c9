"""A multilayer perceptron: Linear -> norm -> activation -> dropout, repeated, then a Linear head."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from torch import nn

from steepest.models.layers import activation as make_activation
from steepest.models.layers import norm_1d
from steepest.nn.norms import ACTIVATIONS, NORMS


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
        self.check_arguments(hidden=hidden, activation=activation, dropout=dropout, norm=norm)
        layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), norm_1d(norm, h), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_outputs))
        super().__init__(*[m for m in layers if not isinstance(m, nn.Identity)])

    @staticmethod
    def check_arguments(hidden: Sequence[int] = (64, 32), activation: str = "relu", dropout: float = 0.0,
                        norm: str = "none") -> None:
        """The recipe's arguments, checked without building anything (`steepest validate` calls this):
        ValueError for a hidden width that is not a whole number >= 1 (a width of 0 trains a model
        whose output ignores its input) or a dropout outside [0, 1); ConfigError for an unknown
        activation or norm name."""
        widths = list(hidden) if isinstance(hidden, (list, tuple)) else hidden
        if not isinstance(widths, list):
            raise ValueError(f"hidden must be a list of layer widths, e.g. [64, 32], got {hidden!r}")
        bad = [h for h in widths if isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1]
        if bad:
            raise ValueError(f"hidden widths must be whole numbers >= 1, got {bad[0]!r} in {widths}; "
                             "give each hidden layer's width, or [] for no hidden layer")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if widths:  # the layers that take them are built only for hidden layers
            ACTIVATIONS.get(activation, "model.activation")
            NORMS.get(norm, "model.norm")
