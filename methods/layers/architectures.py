"""The networks tasks build from a layer factory (`linear`, `conv2d`): an MLP of KAN layers
and torch-conv-kan's simple ConvKANs. The same architecture is built from dense, meta-learned
or codebook layers by passing another factory."""

from __future__ import annotations

import torch
from torch import nn


class KAN(nn.Sequential):
    """An MLP of KAN layers: widths [in, hidden..., out]."""

    def __init__(self, widths: list[int], factory):
        if len(widths) < 2:
            raise ValueError(f"KAN needs at least two widths, got {widths}")
        pairs = zip(widths[:-1], widths[1:], strict=True)
        super().__init__(*(factory.linear(a, b) for a, b in pairs))


CONV_PRESETS = {
    # widths and strides of torch-conv-kan's simple ConvKAN models
    "conv4": ([32, 64, 128, 256], [1, 2, 2, 2]),
    "conv8": ([16, 32, 64, 128, 256, 256, 512, 512], [1, 2, 1, 2, 1, 2, 1, 1]),
    # conv4 at a quarter of its widths: kanbench's CPU variant (grid `conv`)
    "conv4_quarter": ([8, 16, 32, 64], [1, 2, 2, 2]),
}


class ConvKAN(nn.Module):
    """3x3 KAN convolutions, each followed by BatchNorm, global average pooling and a KAN
    classifier head. (batch, in_channels, H, W) -> (batch, num_classes)."""

    def __init__(self, widths: list[int], strides: list[int], in_channels: int,
                 num_classes: int, factory):
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(f"ConvKAN widths {widths} and strides {strides} differ in length")
        blocks, prev = [], in_channels
        for width, stride in zip(widths, strides, strict=True):
            blocks += [factory.conv2d(prev, width, 3, stride=stride, padding=1),
                       nn.BatchNorm2d(width)]
            prev = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = factory.linear(prev, num_classes)

    @classmethod
    def preset(cls, name: str, in_channels: int, num_classes: int, factory) -> ConvKAN:
        if name not in CONV_PRESETS:
            raise ValueError(f"unknown ConvKAN preset {name!r}; valid: {sorted(CONV_PRESETS)}")
        widths, strides = CONV_PRESETS[name]
        return cls(widths, strides, in_channels, num_classes, factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)                       # (batch, widths[-1])
        return self.head(x)                                              # (batch, classes)
