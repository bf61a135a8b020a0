"""Magnitude pruning of KAN edges: each layer keeps the edges whose weight vectors (scaled
coefficients and base weight) have the largest L2 norms, and stores only those vectors and a
bit mask of which edges they are (1 bit per edge, packed as the codebook indices are).

A pruned layer's state dict is its stored form: `kept` (kept edges, G+k+1) fp32 and `mask`
(ceil(E / 8),) uint8. Its forward scatters the kept vectors into the dense weights (zeros
elsewhere) and runs the dense layer's function, so a fine-tune moves only the kept edges.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from kanbench.methods.layers.codebook import pack_indices, replace_layers
from kanbench.methods.layers.kan import (
    FP32_BYTES,
    EdgeWeightsConv2d,
    EdgeWeightsLinear,
    KANLayer,
    KANSpec,
    is_conv,
    kan_layers,
)


def kept_count(edges: int, sparsity: float) -> int:
    """Edges a layer of `edges` keeps at `sparsity`: all but round(sparsity * E), at least 1."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    return max(1, edges - round(sparsity * edges))


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """(E,) bool -> (ceil(E / 8),) uint8: one bit per edge, packed as 2-code indices are."""
    return pack_indices(mask.long(), 2)


def kept_positions(packed: torch.Tensor, edges: int, stored: int) -> torch.Tensor:
    """(stored,) flat indices of the edges a packed mask keeps; ValueError unless it keeps
    exactly `stored` edges and sets no bit past the last one."""
    bits = np.unpackbits(packed.numpy(), bitorder="little")            # (8 ceil(E / 8),)
    if bits[edges:].any():
        raise ValueError("the edge mask has bits set past its last edge")
    flat = torch.from_numpy(np.flatnonzero(bits[:edges]))
    if flat.numel() != stored:
        raise ValueError(f"the mask keeps {flat.numel()} edges but {stored} are stored")
    return flat


class PrunedEdges:
    """What pruned layers share: the kept edges' vectors and the packed mask of where they sit."""

    def init_pruned(self, mask: torch.Tensor, kept: torch.Tensor) -> None:
        edges = math.prod(self.edge_shape)
        assert mask.shape == (edges,) and kept.shape == (int(mask.sum()), self.spec.n_coef + 1)
        self.register_buffer("mask", pack_mask(mask).to(kept.device))   # (ceil(E / 8),)
        self.kept = nn.Parameter(kept.detach().float().clone())       # (kept, G+k+1)
        self._positions: tuple[tuple, torch.Tensor] | None = None

    @property
    def kept_edges(self) -> int:
        return self.kept.shape[0]

    def state_problem(self, state: dict[str, torch.Tensor]) -> str | None:
        """What is wrong with a stored form of this layer (`mask`, `kept`), or None."""
        try:
            kept_positions(state["mask"], math.prod(self.edge_shape), state["kept"].shape[0])
        except ValueError as err:
            return str(err)
        return None

    def positions(self) -> torch.Tensor:
        """(kept,) flat indices of the kept edges, unpacked again whenever the mask changes (or
        inference mode, whose tensors autograd refuses, comes or goes)."""
        key = (self.mask._version, self.mask.data_ptr(), self.kept.shape[0], self.kept.device,
               torch.is_inference_mode_enabled())
        if self._positions is None or self._positions[0] != key:
            flat = kept_positions(self.mask.cpu(), math.prod(self.edge_shape), self.kept_edges)
            self._positions = (key, flat.to(self.kept.device))
        return self._positions[1]

    def edge_weights(self) -> torch.Tensor:
        dim = self.spec.n_coef + 1
        dense = self.kept.new_zeros(math.prod(self.edge_shape), dim)  # (E, G+k+1)
        dense = dense.index_copy(0, self.positions(), self.kept)
        return dense.reshape(*self.edge_shape, dim)                    # (*edges, G+k+1)

    def storage(self) -> dict[str, int]:
        kept = self.kept_edges
        return {"coefficients": kept * self.spec.n_coef * FP32_BYTES,
                "base_weights": kept * FP32_BYTES, "indices": self.mask.numel()}


class PrunedKANLinear(PrunedEdges, EdgeWeightsLinear):
    def __init__(self, in_features: int, out_features: int, spec: KANSpec, mask: torch.Tensor,
                 kept: torch.Tensor):
        EdgeWeightsLinear.__init__(self, in_features, out_features, spec)
        self.init_pruned(mask, kept)


class PrunedKANConv2d(PrunedEdges, EdgeWeightsConv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, spec: KANSpec, mask: torch.Tensor, kept: torch.Tensor):
        EdgeWeightsConv2d.__init__(self, in_channels, out_channels, kernel_size, stride,
                                   padding, spec)
        self.init_pruned(mask, kept)


def pruned_layer(layer: KANLayer, mask: torch.Tensor, kept: torch.Tensor) -> nn.Module:
    """The pruned layer of `layer`'s kind (linear or conv) and shape."""
    if is_conv(layer):
        return PrunedKANConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                               layer.stride, layer.padding, layer.spec, mask, kept)
    return PrunedKANLinear(layer.in_features, layer.out_features, layer.spec, mask, kept)


def prune_edges(net: nn.Module, sparsity: float) -> nn.Module:
    """Replace every KAN layer by its pruned form: in each layer the round(sparsity * E) edges
    of smallest vector norm go (ties: the lower index first), the rest are kept."""
    new = {}
    for name, layer in kan_layers(net).items():
        with torch.no_grad():
            vectors = layer.edge_weights().reshape(-1, layer.spec.n_coef + 1)   # (E, D)
        order = torch.sort(vectors.norm(dim=1), stable=True).indices          # smallest first
        mask = torch.ones(len(vectors), dtype=torch.bool, device=vectors.device)
        mask[order[:len(vectors) - kept_count(len(vectors), sparsity)]] = False
        new[name] = pruned_layer(layer, mask, vectors[mask])
    return replace_layers(net, new)


def prune_skeleton(net: nn.Module, sparsity: float) -> nn.Module:
    """The structure `prune_edges` makes of (a copy of) `net`, kept edges first and zero: what
    a cached or saved pruned state dict loads into."""
    net = copy.deepcopy(net)
    new = {}
    for name, layer in kan_layers(net).items():
        edges = math.prod(layer.edge_shape)
        mask = torch.arange(edges) < kept_count(edges, sparsity)
        new[name] = pruned_layer(layer, mask, torch.zeros(int(mask.sum()), layer.spec.n_coef + 1))
    return replace_layers(net, new)
