"""Codebook compression of KAN edges: k-means, bit-packed indices and their sizes.

Every edge of a KAN layer carries one coefficient vector (its basis coefficients and its base
weight). A codebook method replaces each vector by one of K shared codes and stores, per
edge, only the index of that code: ceil(log2 K) bits, packed (the storage rule, docs/storage.md),
or, where the method's `index_coding` is "ans", entropy-coded by constriction's range ANS coder
under the layer's own index histogram, which the file stores beside the stream.
"""

from __future__ import annotations

import copy
import math

import constriction
import faiss
import numpy as np
import torch
from torch import nn

from kanbench.methods.layers import kernels
from kanbench.methods.layers.kan import (
    FP32_BYTES,
    EdgeWeightsConv2d,
    EdgeWeightsLinear,
    KANLayer,
    KANSpec,
    is_conv,
    kan_layers,
)
from kanbench.methods.layers.spec import CODEBOOK_SCOPES


def index_bits(codes: int) -> int:
    """Bits per index into `codes` codes: ceil(log2 K) (0 for a single code)."""
    if codes < 1:
        raise ValueError(f"a codebook needs at least one code, got {codes}")
    return math.ceil(math.log2(codes))


def packed_bytes(count: int, codes: int) -> int:
    """Bytes of `count` indices into `codes` codes, bit-packed: ceil(N ceil(log2 K) / 8)."""
    return math.ceil(count * index_bits(codes) / 8)


def flat_indices(indices: torch.Tensor, codes: int) -> np.ndarray:
    """The indices as a flat numpy array, checked to lie in [0, K)."""
    flat = indices.detach().cpu().flatten().numpy()
    if flat.size and (flat.min() < 0 or flat.max() >= codes):
        raise ValueError(f"indices must lie in [0, {codes})")
    return flat


def pack_indices(indices: torch.Tensor, codes: int) -> torch.Tensor:
    """(N,) integer indices in [0, K) -> (packed_bytes(N, K),) uint8, least significant bit
    first, index after index."""
    bits = index_bits(codes)
    flat = flat_indices(indices, codes).astype(np.int64)
    planes = (flat[:, None] >> np.arange(bits)) & 1                  # (N, bits)
    return torch.from_numpy(np.packbits(planes.astype(np.uint8).ravel(), bitorder="little"))


def unpack_indices(packed: torch.Tensor, count: int, codes: int) -> torch.Tensor:
    """Inverse of `pack_indices`: (packed_bytes(N, K),) uint8 -> (N,) int64."""
    bits = index_bits(codes)
    if packed.dtype != torch.uint8 or packed.numel() != packed_bytes(count, codes):
        raise ValueError(f"expected {packed_bytes(count, codes)} uint8 bytes for {count} "
                         f"indices of {bits} bits, got {packed.numel()} {packed.dtype}")
    planes = np.unpackbits(packed.numpy(), count=count * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.int64))                 # (bits,)
    return torch.from_numpy(planes.reshape(count, bits).astype(np.int64) @ weights)


def entropy_bytes(indices: torch.Tensor, codes: int) -> float:
    """The empirical-entropy bound on the indices' size: N H(p) / 8 bytes, p their histogram."""
    counts = torch.bincount(indices.flatten().cpu(), minlength=codes).double()
    p = counts[counts > 0] / counts.sum()
    return max(0.0, float(-(p * p.log2()).sum() * indices.numel() / 8))


INDEX_CODINGS = ("packed", "ans")
COUNT_DTYPE = torch.int32     # the ANS coder's table: how often each code is used, 4 B a code


def index_histogram(indices: torch.Tensor, codes: int) -> torch.Tensor:
    """(K,) int32: how many of the indices point at each code (the ANS coder's table)."""
    return torch.bincount(indices.flatten().cpu(), minlength=codes).to(COUNT_DTYPE)


def _ans_model(counts: np.ndarray):
    """The categorical model both ends build from the stored histogram: the same float64
    frequencies give the same fixed-point model (constriction's, quantized without search)."""
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


def ans_encode(indices: torch.Tensor, codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) indices in [0, K) -> (stream, counts): the range-ANS stream as (4 M,) uint8
    (little-endian 32-bit words) and the (K,) int32 histogram it was coded under. Nothing
    to code (N = 0, or a single code) leaves the stream empty."""
    flat = flat_indices(indices, codes).astype(np.int32)
    counts = index_histogram(indices, codes)
    words = np.zeros(0, dtype="<u4")
    if codes > 1 and flat.size:
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(flat, _ans_model(counts.numpy()))
        words = coder.get_compressed().astype("<u4")
    return torch.from_numpy(words.view(np.uint8).copy()), counts


def ans_decode(stream: torch.Tensor, counts: torch.Tensor, count: int, codes: int
               ) -> torch.Tensor:
    """Inverse of `ans_encode`: -> (N,) int64. A stream that does not decode to exactly
    `count` indices under these counts, ending where it began, raises ValueError."""
    if stream.dtype != torch.uint8 or stream.dim() != 1 or stream.numel() % 4:
        raise ValueError("the stream must be whole 32-bit words of uint8")
    if counts.dtype != COUNT_DTYPE or tuple(counts.shape) != (codes,) or \
            bool((counts < 0).any()) or int(counts.sum()) != count:
        raise ValueError(f"its table must count {count} indices over {codes} codes")
    if codes == 1 or count == 0:
        if stream.numel():
            raise ValueError("a stream where there is nothing to code")
        return torch.zeros(count, dtype=torch.int64)
    words = np.frombuffer(stream.numpy().tobytes(), dtype="<u4").astype(np.uint32)
    coder = constriction.stream.stack.AnsCoder(words)
    try:
        symbols = coder.decode(_ans_model(counts.numpy()), count)
    except (ValueError, RuntimeError, AssertionError) as err:
        raise ValueError(f"the stream does not decode ({err})") from None
    if not coder.is_empty():
        raise ValueError("the stream does not end where its indices do")
    decoded = torch.from_numpy(symbols.astype(np.int64))
    if not torch.equal(index_histogram(decoded, codes), counts):
        raise ValueError("the decoded indices do not match the stored histogram")
    return decoded


def kmeans(vectors: torch.Tensor, codes: int, seed: int, iterations: int = 25,
           spherical: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """faiss k-means on every vector (no subsampling; k-means++ seeding, as scikit-learn's):
    (N, D) -> codebook (K', D) float32, assignments (N,) int64, with K' = min(K, N) (a network
    with fewer edges than codes keeps one code per edge). `spherical`: centroids are
    normalized to unit norm after each iteration (for unit-norm data)."""
    data = np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype=np.float32)
    count, dim = data.shape
    codes = min(codes, count)
    if codes == count:  # every vector is its own code
        return torch.from_numpy(data.copy()), torch.arange(count)
    km = faiss.Kmeans(dim, codes, niter=iterations, seed=seed, verbose=False, spherical=spherical,
                      init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
                      min_points_per_centroid=1,
                      max_points_per_centroid=math.ceil(count / codes) + 1)
    km.train(data)
    _, assignments = km.index.search(data, 1)                         # (N, 1)
    return torch.from_numpy(km.centroids.copy()), torch.from_numpy(assignments[:, 0]).long()


# --- compressed layers ---------------------------------------------------------------------

CODEBOOK_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}


def int8_scale(values: torch.Tensor) -> torch.Tensor:
    """Symmetric per-tensor int8 scale: max |v| / 127 (1 for an all-zero tensor), 0-dim fp32."""
    peak = values.detach().abs().max().float() if values.numel() else torch.tensor(0.0)
    return torch.where(peak > 0, peak / 127, torch.ones(())).float()


def quantize_int8(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """round(v / scale) in [-127, 127] as int8; v is recovered to within scale / 2."""
    return torch.round(values.detach().float() / scale).clamp(-127, 127).to(torch.int8)


class Codebook(nn.Module):
    """K codes of D numbers shared by the layers that index it, stored at `dtype` precision
    (fp32, fp16, or int8 with one fp32 scale); counted once via `shared_storage`."""

    def __init__(self, codes: torch.Tensor, dtype: str = "fp32"):
        super().__init__()
        if dtype not in CODEBOOK_DTYPES:
            raise ValueError(f"codebook dtype must be one of {sorted(CODEBOOK_DTYPES)}")
        self.dtype = dtype
        codes = codes.detach().float().clone()                         # (K, D)
        if dtype == "int8":
            self.register_buffer("scale", int8_scale(codes))
            codes = quantize_int8(codes, self.scale).float() * self.scale  # on the int8 grid
        self.codes = nn.Parameter(codes)

    @property
    def size(self) -> int:
        return self.codes.shape[0]

    def stored(self) -> torch.Tensor:
        """The codes as the file holds them: (K, D) at the storage precision."""
        if self.dtype == "int8":
            return quantize_int8(self.codes, self.scale)
        return self.codes.to(CODEBOOK_DTYPES[self.dtype])

    def values(self) -> torch.Tensor:
        """The codes the layers compute with: the stored ones, back in fp32 (fp16: a cast that
        passes gradients straight through, so fine-tuning sees the rounding)."""
        if self.dtype == "int8":
            return self.stored().float() * self.scale                  # (K, D)
        return self.stored().float()                                   # (K, D)

    def shared_storage(self) -> dict[str, int]:
        parts = {"codebook": self.codes.numel() * CODEBOOK_DTYPES[self.dtype].itemsize}
        if self.dtype == "int8":
            parts["quantization_scales"] = FP32_BYTES
        return parts


class CodebookEdges:
    """What codebook layers share: per-edge `indices` into a (shared) `codebook` and their
    stored bytes, bit-packed or (`index_coding` "ans") entropy-coded with their table."""

    index_coding = "packed"   # "ans": set by the method's entropy-coding stage or by a file

    def init_edges(self, codebook: Codebook, indices: torch.Tensor) -> None:
        assert indices.shape == self.edge_shape, (indices.shape, self.edge_shape)
        self.codebook = codebook
        self.register_buffer("indices", indices.long().clone())
        self._coded_version: tuple | None = None        # what `coded_indices` last coded

    def edge_weights(self) -> torch.Tensor:
        return self.codebook.values()[self.indices]                   # (*edges, D)

    def coded_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(stream, counts) of `ans_encode`, coded again only when the indices change."""
        version = (self.indices._version, self.indices.data_ptr(), self.codebook.size)
        if self._coded_version != version:
            self._coded = ans_encode(self.indices, self.codebook.size)
            self._coded_version = version
        return self._coded

    def storage(self) -> dict[str, int]:
        if self.index_coding == "ans":
            stream, counts = self.coded_indices()
            return {"indices": stream.numel(),
                    "index_tables": counts.numel() * counts.element_size()}
        return {"indices": packed_bytes(self.indices.numel(), self.codebook.size)}

    def entropy_bytes(self) -> float:
        return entropy_bytes(self.indices, self.codebook.size)


class GatherForward:
    """Inference through the suite's codebook kernels (methods.layers.kernels) for fully connected
    codebook layers; with gradients on (fine-tuning) the layer rebuilds its edge weights and
    runs the dense path. The kernel layout is rebuilt whenever a source tensor changes (its
    version or storage) and after any forward with gradients, which an optimizer step may
    follow without bumping versions (fused AdamW)."""

    def kernel_layout(self):
        raise NotImplementedError

    def packed(self):
        version = tuple((t.data_ptr(), t._version) for t in (*self.buffers(),
                                                              *self.parameters()))
        if getattr(self, "_packed_version", None) != version:
            self._packed, self._packed_version = self.kernel_layout(), version
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self._packed_version = None
            return super().forward(x)
        return kernels.codebook_linear(x, self.packed(), self.spec, self.base_activation)


class CodebookKANLinear(CodebookEdges, GatherForward, EdgeWeightsLinear):
    """A KAN layer whose (out, in) edges are codes of a (shared) codebook: each code is an
    edge's coefficients followed by its base weight."""

    def __init__(self, in_features: int, out_features: int, spec: KANSpec, codebook: Codebook,
                 indices: torch.Tensor):
        EdgeWeightsLinear.__init__(self, in_features, out_features, spec)
        self.init_edges(codebook, indices)

    def kernel_layout(self):
        return kernels.pack(self.codebook.values(), self.indices)


class CodebookKANConv2d(CodebookEdges, EdgeWeightsConv2d):
    """A KAN convolution whose (out, in, kh, kw) edges are codes of a (shared) codebook."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, spec: KANSpec, codebook: Codebook, indices: torch.Tensor):
        EdgeWeightsConv2d.__init__(self, in_channels, out_channels, kernel_size, stride,
                                   padding, spec)
        self.init_edges(codebook, indices)


def codebook_layer(layer: KANLayer, codebook: Codebook, indices: torch.Tensor) -> nn.Module:
    """The codebook layer of `layer`'s kind (linear or conv) and shape; any KAN layer."""
    if is_conv(layer):
        return CodebookKANConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                 layer.stride, layer.padding, layer.spec, codebook, indices)
    return CodebookKANLinear(layer.in_features, layer.out_features, layer.spec, codebook,
                             indices)


def code_indices(net: nn.Module, coding: str) -> nn.Module:
    """Store every codebook layer's indices `coding` ("packed" or "ans"); lossless, in place."""
    if coding not in INDEX_CODINGS:
        raise ValueError(f"index coding must be one of {INDEX_CODINGS}, got {coding!r}")
    for layer in kan_layers(net).values():
        if isinstance(layer, CodebookEdges):
            layer.index_coding = coding
    return net


def replace_layers(net: nn.Module, new: dict[str, nn.Module]) -> nn.Module:
    """Swap the modules named in `new` (qualified names) in place; returns net."""
    for name, module in new.items():
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, module)
    return net


def scope_groups(layers: dict[str, KANLayer], scope: str) -> list[list[str]]:
    """The layer names that share one codebook: all of them (scope "model") or each alone
    ("layer")."""
    if scope not in CODEBOOK_SCOPES:
        raise ValueError(f"codebook scope must be one of {CODEBOOK_SCOPES}, got {scope!r}")
    if not layers:
        raise ValueError("the network has no KAN layers to put in a codebook")
    return [list(layers)] if scope == "model" else [[name] for name in layers]


def cluster_edges(net: nn.Module, codes: int, scope: str, dtype: str, seed: int,
                  iterations: int = 25) -> nn.Module:
    """Replace every KAN layer (dense, generated or codebook, linear or conv) by a codebook
    layer: k-means (faiss) on the edges' weight vectors, one codebook for the model
    (scope="model") or one per layer ("layer")."""
    layers = kan_layers(net)
    groups = scope_groups(layers, scope)
    with torch.no_grad():
        vectors = {name: m.edge_weights().reshape(-1, m.spec.n_coef + 1)
                   for name, m in layers.items()}                       # (edges, D) each
    new = {}
    for names in groups:
        centroids, assignments = kmeans(torch.cat([vectors[n] for n in names]), codes, seed,
                                        iterations)
        codebook = Codebook(centroids, dtype)
        for name, part in zip(names, assignments.split([len(vectors[n]) for n in names]),
                              strict=True):
            layer = layers[name]
            new[name] = codebook_layer(layer, codebook, part.reshape(layer.edge_shape))
    return replace_layers(net, new)


def codebook_skeleton(net: nn.Module, codes: int, scope: str, dtype: str) -> nn.Module:
    """The structure `cluster_edges` makes of (a copy of) `net`, with zero codes and indices:
    what a cached clustered state dict loads into."""
    net = copy.deepcopy(net)
    layers = kan_layers(net)
    new = {}
    for names in scope_groups(layers, scope):
        edges = sum(math.prod(layers[n].edge_shape) for n in names)
        dim = layers[names[0]].spec.n_coef + 1
        codebook = Codebook(torch.zeros(min(codes, edges), dim), dtype)
        for name in names:
            layer = layers[name]
            new[name] = codebook_layer(layer, codebook, torch.zeros(layer.edge_shape))
    return replace_layers(net, new)
