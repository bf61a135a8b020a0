"""KAN layers in the efficient-kan parameter layout, and the networks built from them.

Every edge (input i, output o) of a `KANLinear` carries
    base_weight[o, i]          the weight of the residual `base_activation(x_i)`,
    spline_weight[o, i, :]     G+k B-spline coefficients on a uniform grid,
    spline_scaler[o, i]        an optional standalone scale of the spline term,
and the layer computes
    y = act(x) @ base_weight.T + B(x).flatten(1) @ (spline_weight * scaler[..., None]).flatten(1).T
The spline term is computed by `methods.splines` (k+1 local bases per input, custom autograd).

Networks never construct layers directly: they ask a *layer factory* (`linear`, `conv2d`),
so a method can build the same architecture from dense, meta-learned or codebook layers.
Every KAN-like layer reports `storage()` (bytes per component) and `dense_bytes()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from methods.splines import dense_bases, recursive_bases, spline_linear

ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh,
               "identity": nn.Identity}
FP32_BYTES = 4


@dataclass(frozen=True)
class KANSpec:
    """The spline settings shared by every KAN layer of a network."""

    grid_size: int = 5                     # G intervals on grid_range
    spline_order: int = 3                  # k
    grid_range: tuple[float, float] = (-1.0, 1.0)
    base_activation: str = "silu"
    spline_scaler: bool = True

    def __post_init__(self):
        if self.grid_size < 1 or self.spline_order < 0:
            raise ValueError(f"need grid_size >= 1 and spline_order >= 0, got {self}")
        if not self.grid_range[0] < self.grid_range[1]:
            raise ValueError(f"grid_range must be increasing, got {self.grid_range}")
        if self.base_activation not in ACTIVATIONS:
            raise ValueError(f"base_activation must be one of {sorted(ACTIVATIONS)}")

    @property
    def n_coef(self) -> int:
        """Spline coefficients per edge: G + k."""
        return self.grid_size + self.spline_order

    def knots(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """The uniform grid extended by k knots on each side: (G + 2k + 1,).
        Computed in float64 and rounded once to `dtype`."""
        lo, hi = self.grid_range
        h = (hi - lo) / self.grid_size
        steps = torch.arange(-self.spline_order, self.grid_size + self.spline_order + 1,
                             dtype=torch.float64)
        return (lo + h * steps).to(dtype=dtype, device=device)


class KANLinear(nn.Module):
    """A fully connected KAN layer (efficient-kan layout). (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, spec: KANSpec = KANSpec(),
                 scale_noise: float = 0.1, scale_base: float = 1.0, scale_spline: float = 1.0):
        super().__init__()
        self.in_features, self.out_features, self.spec = in_features, out_features, spec
        self.base_activation = ACTIVATIONS[spec.base_activation]()
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, spec.n_coef))
        self.spline_scaler = (nn.Parameter(torch.empty(out_features, in_features))
                              if spec.spline_scaler else None)
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * scale_base)
        # efficient-kan fits coefficients to small noise; uniform noise of the same scale
        # gives the same starting function class without a least-squares solve.
        bound = scale_noise / spec.grid_size
        nn.init.uniform_(self.spline_weight, -bound, bound)
        if self.spline_scaler is not None:
            nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * scale_spline)
        else:
            self.spline_weight.data *= scale_spline

    def scaled_spline_weight(self) -> torch.Tensor:
        """(out, in, G+k) coefficients with the standalone scaler folded in."""
        if self.spline_scaler is None:
            return self.spline_weight
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == self.in_features, (x.shape, self.in_features)
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)                            # (batch, in)
        base = F.linear(self.base_activation(x), self.base_weight)    # (batch, out)
        spline = spline_linear(x, self.scaled_spline_weight(), self.spec)  # (batch, out)
        return (base + spline).reshape(*lead, self.out_features)

    def storage(self) -> dict[str, int]:
        edges = self.out_features * self.in_features
        parts = {"coefficients": edges * self.spec.n_coef * FP32_BYTES,
                 "base_weights": edges * FP32_BYTES}
        if self.spline_scaler is not None:
            parts["scalers"] = edges * FP32_BYTES
        return parts

    def dense_bytes(self) -> int:
        return sum(self.storage().values())

    def extra_repr(self) -> str:
        return f"{self.in_features}->{self.out_features}, {self.spec}"


class RecursiveKANLinear(KANLinear):
    """efficient-kan's formulation of the same layer: Cox-de Boor over all knots, dense bases,
    F.linear and plain autograd. The benchmark's baseline and the tests' old path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)                            # (batch, in)
        base = F.linear(self.base_activation(x), self.base_weight)    # (batch, out)
        bases = recursive_bases(x, self.spec).flatten(1)               # (batch, in*(G+k))
        spline = F.linear(bases, self.scaled_spline_weight().flatten(1))
        return (base + spline).reshape(*lead, self.out_features)


class KANConv2d(nn.Module):
    """KAN convolution (torch-conv-kan's KANConv layer without its norm):
    a base conv on act(x) plus a spline conv on the per-channel B-spline bases.

    Edges are (out, in, kernel row, kernel col); each has G+k coefficients and a base weight.
    (batch, in, H, W) -> (batch, out, H', W').
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, spec: KANSpec = KANSpec()):
        super().__init__()
        self.in_channels, self.out_channels, self.spec = in_channels, out_channels, spec
        self.base_activation = ACTIVATIONS[spec.base_activation]()
        conv = dict(kernel_size=kernel_size, stride=stride, padding=padding, bias=False)
        self.base_conv = nn.Conv2d(in_channels, out_channels, **conv)
        self.spline_conv = nn.Conv2d(in_channels * spec.n_coef, out_channels, **conv)
        nn.init.kaiming_uniform_(self.base_conv.weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.spline_conv.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        assert c == self.in_channels, (x.shape, self.in_channels)
        base = self.base_conv(self.base_activation(x))                   # (b, out, H', W')
        # the (b, c*(G+k), h, w) bases are recomputed in backward instead of kept
        return base + checkpoint(self.spline, x, use_reentrant=False)    # (b, out, H', W')

    def spline(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        bases = dense_bases(x, self.spec)                                # (b, c, h, w, G+k)
        bases = bases.permute(0, 1, 4, 2, 3).reshape(b, c * self.spec.n_coef, h, w)
        return self.spline_conv(bases)

    def storage(self) -> dict[str, int]:
        return {"coefficients": self.spline_conv.weight.numel() * FP32_BYTES,
                "base_weights": self.base_conv.weight.numel() * FP32_BYTES}

    def dense_bytes(self) -> int:
        return sum(self.storage().values())


class DenseKANFactory:
    """The layer factory of plain trainable KAN layers."""

    def __init__(self, spec: KANSpec):
        self.spec = spec

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return KANLinear(in_features, out_features, self.spec)

    def conv2d(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
               padding: int = 0) -> nn.Module:
        return KANConv2d(in_channels, out_channels, kernel_size, stride, padding, self.spec)


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
