"""The networks tasks build from a layer factory (`linear`, `conv2d`): an MLP of KAN layers,
torch-conv-kan's simple ConvKANs and the MetaKAN authors' ConvKAN. The same architecture is
built from dense, meta-learned or codebook layers by passing another factory."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class KAN(nn.Sequential):
    """An MLP of KAN layers: widths [in, hidden..., out]."""

    def __init__(self, widths: list[int], factory):
        if len(widths) < 2:
            raise ValueError(f"KAN needs at least two widths, got {widths}")
        pairs = zip(widths[:-1], widths[1:], strict=True)
        super().__init__(*(factory.linear(a, b) for a, b in pairs))


@dataclass(frozen=True)
class ConvBlocks:
    """How a ConvKAN stacks its KAN convolutions: each (3x3, padding 1) is followed by a norm,
    then where `prelu` a PReLU, then from the second block on a Dropout2d of `dropout`; the
    pooled features go to a KAN layer, or where `linear_head` to Dropout(`head_dropout`) and
    an nn.Linear."""

    widths: tuple[int, ...]
    strides: tuple[int, ...]
    prelu: bool = False
    dropout: float = 0.0
    linear_head: bool = False
    head_dropout: float = 0.0


# the MetaKAN authors' SimpleConvKAN and SimpleMetaConvKAN (github.com/Murphyzc/MetaKAN
# @ 94e7f1d, image_classification_conv/: norm, PReLU, Dropout2d 0.25, a Dropout 0.5 + linear
# classifier)
_METAKAN_BLOCKS = dict(prelu=True, dropout=0.25, linear_head=True, head_dropout=0.5)
CONV_PRESETS = {
    # widths and strides of torch-conv-kan's simple ConvKAN models
    "conv4": ConvBlocks((32, 64, 128, 256), (1, 2, 2, 2)),
    "conv8": ConvBlocks((16, 32, 64, 128, 256, 256, 512, 512), (1, 2, 1, 2, 1, 2, 1, 1)),
    # conv4 at a quarter of its widths: kanbench's CPU variant (grid `conv`)
    "conv4_quarter": ConvBlocks((8, 16, 32, 64), (1, 2, 2, 2)),
    "metakan_conv4": ConvBlocks((32, 64, 128, 256), (1, 2, 2, 1), **_METAKAN_BLOCKS),
    # the same at a quarter of its widths (grid `conv_authors`)
    "metakan_conv4_quarter": ConvBlocks((8, 16, 32, 64), (1, 2, 2, 1), **_METAKAN_BLOCKS),
}
NORMS = {"batch": nn.BatchNorm2d,                                    # what follows each conv
         "instance": lambda width: nn.InstanceNorm2d(width, affine=True)}


class ConvKAN(nn.Module):
    """3x3 KAN convolutions as `blocks` says (each followed by a norm: BatchNorm, unless
    `norm` names another of NORMS), global average pooling and a classifier head.
    (batch, in_channels, H, W) -> (batch, num_classes)."""

    def __init__(self, widths: list[int], strides: list[int], in_channels: int,
                 num_classes: int, factory, blocks: ConvBlocks | None = None,
                 norm: str | None = None):
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(f"ConvKAN widths {widths} and strides {strides} differ in length")
        blocks = blocks or ConvBlocks(tuple(widths), tuple(strides))
        layers, prev = [], in_channels
        for i, (width, stride) in enumerate(zip(widths, strides, strict=True)):
            layers += [factory.conv2d(prev, width, 3, stride=stride, padding=1),
                       NORMS[norm or "batch"](width)]
            layers += [nn.PReLU()] if blocks.prelu else []
            layers += [nn.Dropout2d(blocks.dropout)] if i and blocks.dropout else []
            prev = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(blocks.head_dropout),
                                  nn.Linear(prev, num_classes)) if blocks.linear_head \
            else factory.linear(prev, num_classes)

    @classmethod
    def preset(cls, name: str, in_channels: int, num_classes: int, factory,
               norm: str | None = None) -> ConvKAN:
        if name not in CONV_PRESETS:
            raise ValueError(f"unknown ConvKAN preset {name!r}; valid: {sorted(CONV_PRESETS)}")
        blocks = CONV_PRESETS[name]
        return cls(list(blocks.widths), list(blocks.strides), in_channels, num_classes,
                   factory, blocks, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)                       # (batch, widths[-1])
        return self.head(x)                                              # (batch, classes)
