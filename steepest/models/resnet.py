"""Residual and VGG-style CNNs for small images (skip connections: He et al. 2016; VGG: Simonyan &
Zisserman 2015)."""

from __future__ import annotations

from torch import nn

from steepest.models._registry import MODELS
from steepest.models.layers import activation, norm_2d


def _image_shape(input_shape):
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


@MODELS.register("resnet")
class ResNet(nn.Module):
    def __init__(self, input_shape, num_outputs: int, channels: list[int] = (32, 64), blocks_per_stage: int = 2,
                 norm: str = "batchnorm", activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        c, _, _ = _image_shape(input_shape)
        self.input_shape = _image_shape(input_shape)
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


@MODELS.register("vgg")
class VGG(nn.Module):
    """Stages of `convs_per_stage` 3x3 convolutions then 2x2 max-pooling; a dropout MLP head."""

    def __init__(self, input_shape, num_outputs: int, channels: list[int] = (32, 64), convs_per_stage: int = 2,
                 norm: str = "batchnorm", activation: str = "relu", hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        c, h, w = _image_shape(input_shape)
        self.input_shape = (c, h, w)
        layers: list[nn.Module] = []
        for c_out in channels:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(c, c_out, 3, 1, 1, bias=norm == "none"), norm_2d(norm, c_out), activation_layer(activation)]
                c = c_out
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_outputs))

    def forward(self, x):
        return self.head(self.features(x.reshape(len(x), *self.input_shape)))


activation_layer = activation
