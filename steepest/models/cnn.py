"""A small convolutional network for 28x28 (or any small) images."""

from __future__ import annotations

from torch import nn

from steepest.models.layers import activation as make_activation
from steepest.models.layers import norm_2d


class SmallCNN(nn.Module):
    """[conv3x3 -> norm -> act -> maxpool2] per entry of `channels`, global average pool, dropout, Linear.

    >>> import torch
    >>> SmallCNN((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        channels: list[int] = (32, 64),  # type: ignore[assignment]
        activation: str = "relu",
        norm: str = "batchnorm",
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(input_shape) == 2:
            input_shape = (1, *input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"cnn needs image inputs (C, H, W); the data has shape {tuple(input_shape)} (use model.name: mlp)")
        blocks: list[nn.Module] = []
        c_in = input_shape[0]
        for c in channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=norm == "none"), norm_2d(norm, c), make_activation(activation), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*[b for b in blocks if not isinstance(b, nn.Identity)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_outputs))
        self.input_shape = tuple(input_shape)

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.head(self.features(x))
