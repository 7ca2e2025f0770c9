"""A residual CNN for small images (skip connections: He et al. 2016)."""

from __future__ import annotations

from torch import nn

from steepest.models.layers import activation, norm_2d


def image_shape(input_shape) -> tuple[int, int, int]:
    """(C, H, W) from the data's input shape; (H, W) gets one channel."""
    shape = tuple(input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise ValueError(f"needs image inputs (C, H, W); the data has shape {tuple(input_shape)} (use model.name: mlp)")
    return shape


class ResidualBlock(nn.Module):
    """y = act(x_skip + BN(conv(act(BN(conv(x))))) ), with a 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, act: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), norm_2d(norm, c_out), activation(act),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), norm_2d(norm, c_out))
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm_2d(norm, c_out))
        self.act = activation(act)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    """A 3x3 stem, then stages of residual blocks (the first block of each later stage halves the size
    and widens to the stage's channels), global average pooling and a linear head.

    >>> import torch
    >>> ResNet((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape, num_outputs: int, channels: list[int] = (32, 64), blocks_per_stage: int = 2,
                 norm: str = "batchnorm", activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.input_shape = image_shape(input_shape)
        c = self.input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, channels[0], 3, 1, 1, bias=False), norm_2d(norm, channels[0]), nn.ReLU())
        layers, c_in = [], channels[0]
        for i, c_out in enumerate(channels):
            for j in range(blocks_per_stage):
                layers.append(ResidualBlock(c_in, c_out, 2 if (j == 0 and i > 0) else 1, norm, activation))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_outputs))

    def forward(self, x):
        return self.head(self.stages(self.stem(x.reshape(len(x), *self.input_shape))))
