"""Codebook compression of KAN edges: k-means, bit-packed indices and their sizes.

Every edge of a KAN layer carries one coefficient vector (its basis coefficients and its base
weight). A codebook method replaces each vector by one of K shared codes and stores, per
edge, only the index of that code: ceil(log2 K) bits, packed (the storage rule, docs/storage.md).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import faiss
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from methods.kan import FP32_BYTES, EdgeWeightsConv2d, EdgeWeightsLinear, KANSpec
from suite import kernels
from suite.errors import KanbenchError, regular_file


def index_bits(codes: int) -> int:
    """Bits per index into `codes` codes: ceil(log2 K) (0 for a single code)."""
    if codes < 1:
        raise ValueError(f"a codebook needs at least one code, got {codes}")
    return math.ceil(math.log2(codes))


def packed_bytes(count: int, codes: int) -> int:
    """Bytes of `count` indices into `codes` codes, bit-packed: ceil(N ceil(log2 K) / 8)."""
    return math.ceil(count * index_bits(codes) / 8)


def pack_indices(indices: torch.Tensor, codes: int) -> torch.Tensor:
    """(N,) integer indices in [0, K) -> (packed_bytes(N, K),) uint8, least significant bit
    first, index after index."""
    bits = index_bits(codes)
    flat = indices.detach().cpu().flatten().numpy().astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= codes):
        raise ValueError(f"indices must lie in [0, {codes})")
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
    bit-packed bytes."""

    def init_edges(self, codebook: Codebook, indices: torch.Tensor) -> None:
        assert indices.shape == self.edge_shape, (indices.shape, self.edge_shape)
        self.codebook = codebook
        self.register_buffer("indices", indices.long().clone())

    def edge_weights(self) -> torch.Tensor:
        return self.codebook.values()[self.indices]                   # (*edges, D)

    def storage(self) -> dict[str, int]:
        return {"indices": packed_bytes(self.indices.numel(), self.codebook.size)}

    def entropy_bytes(self) -> float:
        return entropy_bytes(self.indices, self.codebook.size)


class GatherForward:
    """Inference through the suite's codebook kernels (suite.kernels) for fully connected
    codebook layers; with gradients on (fine-tuning) the layer rebuilds its edge weights and
    runs the dense path. The kernel layout is rebuilt whenever a source tensor changes."""

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


def edge_layers(net: nn.Module) -> dict[str, nn.Module]:
    """The layers with computed edge weights, by qualified name, in network order."""
    return {name: m for name, m in net.named_modules()
            if isinstance(m, (EdgeWeightsLinear, EdgeWeightsConv2d))}


def codebook_layer(layer: nn.Module, codebook: Codebook, indices: torch.Tensor) -> nn.Module:
    """The codebook layer of `layer`'s kind and shape."""
    if isinstance(layer, EdgeWeightsConv2d):
        return CodebookKANConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                 layer.stride, layer.padding, layer.spec, codebook, indices)
    return CodebookKANLinear(layer.in_features, layer.out_features, layer.spec, codebook,
                             indices)


def replace_layers(net: nn.Module, new: dict[str, nn.Module]) -> nn.Module:
    """Swap the modules named in `new` (qualified names) in place; returns net."""
    for name, module in new.items():
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, module)
    return net


def cluster_edges(net: nn.Module, codes: int, scope: str, dtype: str, seed: int,
                  iterations: int = 25) -> nn.Module:
    """Replace every edge-weight layer by a codebook layer: k-means (faiss) on the edges'
    weight vectors, one codebook for the model (scope="model") or one per layer ("layer")."""
    layers = edge_layers(net)
    with torch.no_grad():
        vectors = {name: m.edge_weights().reshape(-1, m.spec.n_coef + 1)
                   for name, m in layers.items()}                       # (edges, D) each
    groups = [list(layers)] if scope == "model" else [[name] for name in layers]
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
    layers = edge_layers(net)
    groups = [list(layers)] if scope == "model" else [[name] for name in layers]
    new = {}
    for names in groups:
        edges = sum(math.prod(layers[n].edge_shape) for n in names)
        dim = layers[names[0]].spec.n_coef + 1
        codebook = Codebook(torch.zeros(min(codes, edges), dim), dtype)
        for name in names:
            layer = layers[name]
            new[name] = codebook_layer(layer, codebook, torch.zeros(layer.edge_shape))
    return replace_layers(net, new)


# --- the compressed-model file -------------------------------------------------------------
# safetensors tensors plus a JSON header saying how to read them: each codebook once at its
# storage precision (with its scale when int8), each codebook layer's bit-packed indices, and
# every other tensor of the network (per-edge gains, biases, base weights, scales, non-KAN
# parameters) as the state dict holds it.

FORMAT = "kanbench.codebook"
VERSION = 2


def codebook_layers(net: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in net.named_modules() if isinstance(m, CodebookEdges)}


def codebooks_of(layers: dict[str, nn.Module]) -> list[Codebook]:
    """The distinct codebooks of the layers, in order of first use."""
    unique: dict[int, Codebook] = {}
    for layer in layers.values():
        unique.setdefault(id(layer.codebook), layer.codebook)
    return list(unique.values())


def plain_tensors(net: nn.Module, layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The state dict less what the file stores in its own form (codebooks, indices)."""
    special = tuple(f"{name}.{part}" for name in layers for part in ("codebook.", "indices"))
    return {n: t for n, t in net.state_dict().items() if not n.startswith(special)}


def codebook_tensors(books: list[Codebook]) -> dict[str, torch.Tensor]:
    tensors = {}
    for i, book in enumerate(books):
        tensors[f"codebooks.{i}"] = book.stored().detach().contiguous()
        if book.dtype == "int8":
            tensors[f"codebooks.{i}.scale"] = book.scale.detach().reshape(1).contiguous()
    return tensors


def save_codebooks(net: nn.Module, path: str | Path) -> None:
    """Only the codebooks: the file several heads that share them point to."""
    save_file(codebook_tensors(codebooks_of(codebook_layers(net))), str(path))


def save_compressed(net: nn.Module, path: str | Path, method: str,
                    with_codebooks: bool = True) -> None:
    """The model file; `with_codebooks=False` leaves the codebooks to a shared file."""
    layers = codebook_layers(net)
    books = codebooks_of(layers)
    book_index = {id(b): i for i, b in enumerate(books)}
    tensors = codebook_tensors(books) if with_codebooks else {}
    header = {"format": FORMAT, "version": VERSION, "method": method,
              "codebooks": [{"codes": b.size, "dim": b.codes.shape[1], "dtype": b.dtype}
                            for b in books], "layers": {}}
    for name, layer in layers.items():
        tensors[f"{name}.indices"] = pack_indices(layer.indices, layer.codebook.size)
        header["layers"][name] = {"edges": list(layer.edge_shape),
                                  "codebook": book_index[id(layer.codebook)],
                                  "bits": index_bits(layer.codebook.size)}
    tensors |= {n: t.detach().contiguous() for n, t in plain_tensors(net, layers).items()}
    save_file(tensors, str(path), metadata={"kanbench": json.dumps(header)})


def load_compressed(path: str | Path, net: nn.Module) -> nn.Module:
    """Fill `net` (the codebook structure the method builds) from a compressed-model file,
    checking every name, shape, dtype and index range first. Raises KanbenchError (one line)
    on any mismatch; nothing is loaded from a bad file."""
    where = f"compressed model {path}"
    regular_file(Path(path), "compressed model")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get("kanbench")
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise KanbenchError(f"{where}: not a readable safetensors file ({err})") from None
    try:
        header = json.loads(meta)
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError
    except (TypeError, ValueError, AttributeError):
        raise KanbenchError(f"{where}: no {FORMAT} v{VERSION} header") from None
    if not isinstance(header.get("codebooks"), list) or not isinstance(header.get("layers"),
                                                                       dict):
        raise KanbenchError(f"{where}: its header's codebooks must be a list and its layers a "
                            "mapping")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise KanbenchError(f"{where}: {name} holds non-finite values")

    layers = codebook_layers(net)
    books = codebooks_of(layers)

    def expect(name: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        if name not in tensors:
            raise KanbenchError(f"{where}: tensor {name!r} is missing")
        t = tensors.pop(name)
        if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            raise KanbenchError(f"{where}: {name} is {t.dtype} {tuple(t.shape)}, "
                                f"expected {dtype} {tuple(shape)}")
        return t

    if len(header["codebooks"]) != len(books) or set(header["layers"]) != set(layers):
        raise KanbenchError(f"{where}: its layers and codebooks do not match this network's")
    codes, scales = [], []
    for i, book in enumerate(books):
        codes.append(expect(f"codebooks.{i}", tuple(book.codes.shape),
                            CODEBOOK_DTYPES[book.dtype]))
        if book.dtype == "int8":
            scales.append(expect(f"codebooks.{i}.scale", (1,), torch.float32))
    indices = {}
    for name, layer in layers.items():
        size, count = layer.codebook.size, layer.indices.numel()
        packed = expect(f"{name}.indices", (packed_bytes(count, size),), torch.uint8)
        decoded = unpack_indices(packed, count, size)
        if count and decoded.max() >= size:
            raise KanbenchError(f"{where}: {name} has an index {int(decoded.max())} outside "
                                f"its codebook of {size} codes")
        indices[name] = decoded.reshape(layer.edge_shape)
    rest = {n: expect(n, tuple(t.shape), t.dtype)
            for n, t in plain_tensors(net, layers).items()}
    if tensors:
        raise KanbenchError(f"{where}: unexpected tensor {sorted(tensors)[0]!r}")

    with torch.no_grad():
        scale_of = iter(scales)
        for book, stored in zip(books, codes, strict=True):
            if book.dtype == "int8":
                book.scale.copy_(next(scale_of)[0])
                book.codes.copy_(stored.float() * book.scale)
            else:
                book.codes.copy_(stored.float())
        for name, layer in layers.items():
            layer.indices.copy_(indices[name])
        net.load_state_dict(rest, strict=False)
    return net
