"""A VGG-style CNN (Simonyan & Zisserman 2015): stacks of 3x3 convolutions, 2x2 max-pooling,
and a fully connected head with dropout."""

from __future__ import annotations

from torch import nn

from steepest.models.layers import activation as make_activation
from steepest.models.layers import norm_2d
from steepest.models.resnet import image_shape


class VGG(nn.Module):
    """Stages of `convs_per_stage` 3x3 convolutions then 2x2 max-pooling; a dropout MLP head.

    >>> import torch
    >>> VGG((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape, num_outputs: int, channels: list[int] = (32, 64), convs_per_stage: int = 2,
                 norm: str = "batchnorm", activation: str = "relu", hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        c, h, w = image_shape(input_shape)
        self.input_shape = (c, h, w)
        layers: list[nn.Module] = []
        for c_out in channels:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(c, c_out, 3, 1, 1, bias=norm == "none"), norm_2d(norm, c_out), make_activation(activation)]
                c = c_out
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_outputs))

    def forward(self, x):
        return self.head(self.features(x.reshape(len(x), *self.input_shape)))

