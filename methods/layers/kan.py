"""KAN layers in the efficient-kan parameter layout, the functions they compute, and the
`KANLayer` protocol every KAN-like layer of the library implements.

Every edge (input i, output o) of a `KANLinear` carries
    base_weight[o, i]          the weight of the residual `base_activation(x_i)`,
    spline_weight[o, i, :]     G+k B-spline coefficients on a uniform grid,
    spline_scaler[o, i]        an optional standalone scale of the spline term,
and the layer computes
    y = act(x) @ base_weight.T + B(x).flatten(1) @ (spline_weight * scaler[..., None]).flatten(1).T
The spline term is computed by `methods.layers.splines` (k+1 local bases per input, custom
autograd). `KANSpec.basis` swaps the B-splines for FastKAN's RBFs or Gram polynomials
(`methods.layers.bases`); `n_coef` is then the number of those functions and everything else
stays the same.

Networks never construct layers directly: they ask a *layer factory* (`linear`, `conv2d`;
`methods.layers.architectures`), so a method can build the same architecture from dense,
meta-learned or codebook layers.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from kanbench.methods.layers.bases import basis_values, normalize
from kanbench.methods.layers.spec import ACTIVATIONS, KANSpec
from kanbench.methods.layers.splines import (
    dense_bases,
    recursive_bases,
    scaled_coefficients,
    spline_linear,
)

FP32_BYTES = 4
DEFAULT_SPEC = KANSpec()


def activation(name: str) -> nn.Module:
    """The base activation module named in a KANSpec."""
    return getattr(nn, ACTIVATIONS[name])()


@runtime_checkable
class KANLayer(Protocol):
    """What every KAN-like layer provides, however it stores its edges (dense, generated,
    codebook): the harness measures it, the codebook helpers compress it, the file format
    writes it. Conv layers (edge_shape of 4) also carry in_channels, out_channels,
    kernel_size, stride and padding; linear ones in_features and out_features."""

    spec: KANSpec

    @property
    def edge_shape(self) -> tuple[int, ...]: ...   # (out, in) or (out, in, kh, kw)

    def edge_weights(self) -> torch.Tensor: ...    # (*edge_shape, n_coef + 1), base weight last

    def storage(self) -> dict[str, int]: ...       # bytes by component, itemized

    def dense_bytes(self) -> int: ...              # fp32 bytes of the dense layer it stands for


def kan_layers(net: nn.Module) -> dict[str, KANLayer]:
    """The outermost KAN layers of `net` by qualified name, in network order."""
    found: dict[str, KANLayer] = {}
    for name, module in net.named_modules():
        if isinstance(module, KANLayer) and not any(name.startswith(f"{p}.") for p in found):
            found[name] = module
    return found


def is_conv(layer: KANLayer) -> bool:
    return len(layer.edge_shape) == 4


class KANLinear(nn.Module):
    """A fully connected KAN layer (efficient-kan layout). (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, spec: KANSpec = DEFAULT_SPEC,
                 scale_noise: float = 0.1, scale_base: float = 1.0, scale_spline: float = 1.0):
        super().__init__()
        self.in_features, self.out_features, self.spec = in_features, out_features, spec
        self.base_activation = activation(spec.base_activation)
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
        self._folded: tuple[tuple, torch.Tensor] | None = None   # (key, scaled coefficients)

    def scaled_spline_weight(self) -> torch.Tensor:
        """(out, in, G+k) coefficients with the standalone scaler folded in. Where no gradient
        can flow (no_grad, inference_mode, frozen weights) the product is made once and kept
        until either tensor changes (its version, storage, dtype or device), so inference
        multiplies as a deployed layer with folded scalers would, not once per call. A forward
        with gradients drops it (`forward`): an optimizer step may follow that leaves the
        versions as they were (fused AdamW writes in place without bumping them)."""
        if self.spline_scaler is None:
            return self.spline_weight
        weight, scaler = self.spline_weight, self.spline_scaler
        if self._scaler_trains():
            return weight * scaler.unsqueeze(-1)
        key = (weight._version, scaler._version, weight.data_ptr(), scaler.data_ptr(),
               weight.dtype, weight.device, torch.is_inference_mode_enabled())
        if self._folded is None or self._folded[0] != key:
            with torch.no_grad():
                self._folded = (key, weight * scaler.unsqueeze(-1))
        return self._folded[1]

    def _scaler_trains(self) -> bool:
        """Whether a gradient can flow into the coefficients or their scaler."""
        return (self.spline_scaler is not None and torch.is_grad_enabled()
                and (self.spline_weight.requires_grad or self.spline_scaler.requires_grad))

    @property
    def edge_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    def edge_weights(self) -> torch.Tensor:
        """(out, in, G+k+1): each edge's scaled coefficients, then its base weight."""
        return torch.cat([self.scaled_spline_weight(), self.base_weight.unsqueeze(-1)], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._scaler_trains():  # the spline term applies the scaler inside its own autograd
            coef, scaler = self.spline_weight, self.spline_scaler
            self._folded = None    # training: the weights may change without a new version
        else:
            coef, scaler = self.scaled_spline_weight(), None
        return kan_linear(x, self.base_weight, coef, self.spec, self.base_activation, scaler)

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


def layer_bases(x: torch.Tensor, spec: KANSpec) -> torch.Tensor:
    """Every basis function at every input of a fully connected layer, whatever the basis:
    x (batch, in) -> (batch, in, n_coef)."""
    if spec.basis == "bspline":
        return dense_bases(x, spec)
    return basis_values(normalize(x, spec), spec)


def kan_linear(x: torch.Tensor, base_weight: torch.Tensor, coef: torch.Tensor, spec: KANSpec,
               activation: nn.Module, scaler: torch.Tensor | None = None) -> torch.Tensor:
    """The KAN layer as a function of its weights, for stored, generated or decoded ones:
    x (..., in), base_weight (out, in), coef (out, in, G+k), scaler (out, in) multiplying
    each edge's coefficients or None -> (..., out)."""
    out_features, in_features = base_weight.shape
    assert x.shape[-1] == in_features, (x.shape, in_features)
    lead = x.shape[:-1]
    x = x.reshape(-1, in_features)                                     # (batch, in)
    base = F.linear(activation(x), base_weight)                        # (batch, out)
    if spec.basis == "bspline":
        spline = spline_linear(x, coef, spec, scaler=scaler)           # (batch, out)
    else:
        weight = scaled_coefficients(coef, scaler).flatten(1)          # (out, in*n_coef)
        spline = F.linear(layer_bases(x, spec).flatten(1), weight)     # (batch, out)
    return (base + spline).reshape(*lead, out_features)


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
                 padding: int = 0, spec: KANSpec = DEFAULT_SPEC):
        super().__init__()
        self.in_channels, self.out_channels, self.spec = in_channels, out_channels, spec
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.base_activation = activation(spec.base_activation)
        conv = dict(kernel_size=kernel_size, stride=stride, padding=padding, bias=False)
        self.base_conv = nn.Conv2d(in_channels, out_channels, **conv)
        self.spline_conv = nn.Conv2d(in_channels * spec.n_coef, out_channels, **conv)
        nn.init.kaiming_uniform_(self.base_conv.weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.spline_conv.weight, a=math.sqrt(5))

    @property
    def edge_shape(self) -> tuple[int, ...]:
        return tuple(self.base_conv.weight.shape)

    def edge_weights(self) -> torch.Tensor:
        """(out, in, kh, kw, G+k+1): each edge's coefficients, then its base weight."""
        out, c, kh, kw = self.edge_shape
        coef = self.spline_conv.weight.reshape(out, c, self.spec.n_coef, kh, kw)
        return torch.cat([coef.permute(0, 1, 3, 4, 2), self.base_conv.weight.unsqueeze(-1)], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kan_conv2d(x, self.base_conv.weight, self.spline_conv.weight, self.spec,
                          self.base_activation, self.stride, self.padding)

    def storage(self) -> dict[str, int]:
        return {"coefficients": self.spline_conv.weight.numel() * FP32_BYTES,
                "base_weights": self.base_conv.weight.numel() * FP32_BYTES}

    def dense_bytes(self) -> int:
        return sum(self.storage().values())


def kan_conv2d(x: torch.Tensor, base_kernel: torch.Tensor, spline_kernel: torch.Tensor,
               spec: KANSpec, activation: nn.Module, stride, padding) -> torch.Tensor:
    """The KAN convolution as a function of its kernels: x (b, in, H, W), base_kernel
    (out, in, kh, kw), spline_kernel (out, in*(G+k), kh, kw) with input channel c*(G+k) + j
    for basis j of channel c -> (b, out, H', W')."""
    assert x.shape[1] == base_kernel.shape[1], (x.shape, base_kernel.shape)
    base = F.conv2d(activation(x), base_kernel, stride=stride, padding=padding)
    # the (b, in*(G+k), H, W) bases are recomputed in backward instead of kept
    spline = checkpoint(_spline_conv2d, x, spline_kernel, spec, stride, padding,
                        use_reentrant=False)
    return base + spline                                                 # (b, out, H', W')


def _spline_conv2d(x, spline_kernel, spec, stride, padding):
    b, c, h, w = x.shape
    if spec.basis == "bspline":
        bases = dense_bases(x, spec)                                     # (b, c, h, w, G+k)
    else:
        bases = basis_values(normalize(x, spec, dim=1), spec)            # (b, c, h, w, n_coef)
    bases = bases.permute(0, 1, 4, 2, 3).reshape(b, c * spec.n_coef, h, w)
    return F.conv2d(bases, spline_kernel, stride=stride, padding=padding)


class EdgeWeightsLinear(nn.Module):
    """A KAN layer whose edge weights are computed (generated, decoded) rather than stored.
    Subclasses give `edge_weights()`: (out, in, G+k+1), the spline coefficients of each edge
    followed by its base weight (no separate scaler). (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, spec: KANSpec):
        super().__init__()
        self.in_features, self.out_features, self.spec = in_features, out_features, spec
        self.base_activation = activation(spec.base_activation)

    @property
    def edge_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    @property
    def fan_in(self) -> int:
        return self.in_features

    def edge_weights(self) -> torch.Tensor:
        raise NotImplementedError

    def edge_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(coefficients (out, in, G+k), base weights (out, in)); a subclass that makes them
        apart gives them contiguous, so a training step's backward never assembles the
        gradient of the whole (out, in, G+k+1) tensor from slices."""
        w = self.edge_weights()                                          # (out, in, G+k+1)
        return w[..., :-1], w[..., -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef, base = self.edge_parts()
        return kan_linear(x, base, coef, self.spec, self.base_activation)

    def dense_bytes(self) -> int:
        """fp32 bytes of the dense layer this one stands for (its scaler included)."""
        per_edge = self.spec.n_coef + 1 + int(self.spec.spline_scaler)
        return math.prod(self.edge_shape) * per_edge * FP32_BYTES


class EdgeWeightsConv2d(nn.Module):
    """The convolution counterpart: `edge_weights()` is (out, in, kh, kw, G+k+1).
    (batch, in, H, W) -> (batch, out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, spec: KANSpec):
        super().__init__()
        self.in_channels, self.out_channels, self.spec = in_channels, out_channels, spec
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.base_activation = activation(spec.base_activation)

    @property
    def edge_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel_size**2

    def edge_weights(self) -> torch.Tensor:
        raise NotImplementedError

    def edge_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(coefficients (out, in, kh, kw, G+k), base kernel (out, in, kh, kw)), as
        `EdgeWeightsLinear.edge_parts`."""
        w = self.edge_weights()                                    # (out, in, kh, kw, G+k+1)
        return w[..., :-1], w[..., -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef, base = self.edge_parts()
        out, c, kh, kw, _ = coef.shape
        spline = coef.permute(0, 1, 4, 2, 3).reshape(out, c * self.spec.n_coef, kh, kw)
        return kan_conv2d(x, base, spline, self.spec, self.base_activation, self.stride,
                          self.padding)

    def dense_bytes(self) -> int:
        """fp32 bytes of the dense KANConv2d this layer stands for."""
        return math.prod(self.edge_shape) * (self.spec.n_coef + 1) * FP32_BYTES


class DenseKANFactory:
    """The layer factory of plain trainable KAN layers."""

    def __init__(self, spec: KANSpec):
        self.spec = spec

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return KANLinear(in_features, out_features, self.spec)

    def conv2d(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
               padding: int = 0) -> nn.Module:
        return KANConv2d(in_channels, out_channels, kernel_size, stride, padding, self.spec)
