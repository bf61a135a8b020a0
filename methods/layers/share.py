"""SHARe-KAN's layers (arXiv 2512.15742): post-training Gain-Shape-Bias vector quantization of a
trained KAN (any KAN layer: dense, generated or codebook), with no gradient step.

Each edge's spline coefficients c_e (its scaler folded in: efficient-kan's scaler multiplies
the whole spline term of the edge, so it becomes part of the gain and bias) are written as

    c_e = g_e * s[idx_e] + b_e * 1,   b_e = mean(c_e),  g_e = |c_e - b_e|,

with s a codebook of K unit-norm, zero-mean shapes shared by every edge of a layer, found by
spherical k-means (faiss) on the edges' normalized centred vectors. The base weight of each
edge is kept. FP32 stores gains, biases and base weights in fp32; Int8 stores
them and the codebook in int8, each tensor with one symmetric scale (q = round(v / scale),
scale = max|v| / 127, so |v - q scale| <= scale / 2). Indices take ceil(log2 K) bits.

`share_heads` compresses several trained heads of one architecture against one codebook per
layer position (multi-head sharing): each extra head adds only its indices, gains, biases and
base weights.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from kanbench.methods.layers import kernels
from kanbench.methods.layers.codebook import (
    Codebook,
    CodebookEdges,
    GatherForward,
    int8_scale,
    kmeans,
    quantize_int8,
    replace_layers,
)
from kanbench.methods.layers.files import safetensors_payload_bytes, save_codebooks, save_compressed
from kanbench.methods.layers.kan import (
    FP32_BYTES,
    EdgeWeightsConv2d,
    EdgeWeightsLinear,
    KANLayer,
    is_conv,
    kan_layers,
)

PRECISIONS = ("fp32", "int8")
EDGE_NUMBERS = ("gains", "biases", "base_weights")


def decompose(coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """coef (N, n) -> gains (N,), biases (N,), shapes (N, n) with c = g s + b: s unit-norm and
    zero-mean (all zero where the edge is constant, g = 0)."""
    biases = coef.mean(-1)                                             # (N,)
    centred = coef - biases.unsqueeze(-1)                              # (N, n)
    gains = centred.norm(dim=-1)                                       # (N,)
    shapes = torch.where(gains.unsqueeze(-1) > 0,
                         centred / gains.clamp_min(torch.finfo(coef.dtype).tiny).unsqueeze(-1),
                         torch.zeros_like(centred))
    return gains, biases, shapes


def shape_codebook(shapes: torch.Tensor, codes: int, seed: int, iterations: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means of unit shapes (N, n) -> codebook (K', n) of unit-norm zero-mean
    shapes and assignments (N,). With K >= N every shape is its own code (exact)."""
    codebook, assignments = kmeans(shapes, codes, seed, iterations, spherical=True)
    if codebook.shape[0] < shapes.shape[0]:  # k-means centroids: re-centre and re-normalize
        codebook = codebook - codebook.mean(-1, keepdim=True)
        codebook = codebook / codebook.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return codebook, assignments


class ShareEdges(CodebookEdges):
    """Per-edge gain, bias and base weight beside the index into a shape codebook; stored as
    fp32 buffers, or int8 buffers with a 0-dim fp32 `<name>_scale` each."""

    def init_share(self, codebook: Codebook, indices: torch.Tensor, numbers: dict,
                   precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.init_edges(codebook, indices)
        self.precision = precision
        for name in EDGE_NUMBERS:
            value = numbers[name].detach().float().reshape(self.edge_shape)
            if precision == "int8":
                scale = int8_scale(value)
                self.register_buffer(name, quantize_int8(value, scale))
                self.register_buffer(f"{name}_scale", scale)
            else:
                self.register_buffer(name, value.clone())

    def number(self, name: str) -> torch.Tensor:
        """A per-edge number as the layer computes with it: (*edges,) float32."""
        value = getattr(self, name)
        return value.float() * getattr(self, f"{name}_scale") if self.precision == "int8" \
            else value

    def edge_weights(self) -> torch.Tensor:
        shapes = self.codebook.values()[self.indices]                  # (*edges, n_coef)
        coef = shapes * self.number("gains").unsqueeze(-1) + self.number("biases").unsqueeze(-1)
        return torch.cat([coef, self.number("base_weights").unsqueeze(-1)], -1)

    def storage(self) -> dict[str, int]:
        parts = super().storage()
        for name in EDGE_NUMBERS:
            value = getattr(self, name)
            parts[name] = value.numel() * value.element_size()
        if self.precision == "int8":
            parts["quantization_scales"] = len(EDGE_NUMBERS) * FP32_BYTES
        return parts

    def kernel_numbers(self):
        """gains, biases, base weights in the kernels' form: float32 or (int8, scale)."""
        if self.precision == "int8":
            return [(getattr(self, n), float(getattr(self, f"{n}_scale"))) for n in EDGE_NUMBERS]
        return [getattr(self, n) for n in EDGE_NUMBERS]


class ShareKANLinear(ShareEdges, GatherForward, EdgeWeightsLinear):
    """A fully connected SHARe layer; inference runs the suite's codebook kernels."""

    def __init__(self, in_features, out_features, spec, codebook, indices, numbers, precision):
        EdgeWeightsLinear.__init__(self, in_features, out_features, spec)
        self.init_share(codebook, indices, numbers, precision)

    def kernel_layout(self):
        return kernels.pack(self.codebook.values(), self.indices, *self.kernel_numbers())


class ShareKANConv2d(ShareEdges, EdgeWeightsConv2d):
    """A SHARe KAN convolution (forward through its rebuilt kernels)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, spec, codebook,
                 indices, numbers, precision):
        EdgeWeightsConv2d.__init__(self, in_channels, out_channels, kernel_size, stride,
                                   padding, spec)
        self.init_share(codebook, indices, numbers, precision)


def share_layer(layer: KANLayer, codebook: Codebook, indices: torch.Tensor, numbers: dict,
                precision: str) -> nn.Module:
    """The SHARe layer of `layer`'s kind (linear or conv) and shape; any KAN layer."""
    if is_conv(layer):
        return ShareKANConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                              layer.stride, layer.padding, layer.spec, codebook, indices,
                              numbers, precision)
    return ShareKANLinear(layer.in_features, layer.out_features, layer.spec, codebook, indices,
                          numbers, precision)


def quantize_heads(nets: list[nn.Module], codes: int, seed: int, iterations: int = 25
                   ) -> list[nn.Module]:
    """SHARe-FP32 of trained dense nets of one architecture, in place: per layer position one
    shape codebook fitted on the edges of every net (one net: the paper's per-layer codebook)."""
    layers = [kan_layers(net) for net in nets]
    for name in layers[0]:
        edge_shape = layers[0][name].edge_shape
        numbers, shapes = [], []                      # one head at a time: 50 paper heads fit
        for lay in layers:
            with torch.no_grad():
                weights = lay[name].edge_weights()                       # (*edges, n+1)
            weights = weights.reshape(-1, weights.shape[-1])
            gains, biases, unit = decompose(weights[:, :-1].double())    # (N,), (N,), (N, n)
            numbers.append({"gains": gains, "biases": biases,
                            "base_weights": weights[:, -1].clone()})
            shapes.append(unit.float())
        codebook_values, assignments = shape_codebook(torch.cat(shapes), codes, seed,
                                                      iterations)  # over all heads' edges
        del shapes
        codebook = Codebook(codebook_values).requires_grad_(False)
        count = math.prod(edge_shape)
        for head, lay in enumerate(layers):
            indices = assignments[head * count:(head + 1) * count].reshape(edge_shape)
            replace_layers(nets[head], {name: share_layer(lay[name], codebook, indices,
                                                          numbers[head], "fp32")})
    return nets


def to_int8(net: nn.Module, books: dict[int, Codebook] | None = None) -> nn.Module:
    """SHARe-Int8 of a SHARe-FP32 net, in place: codebooks, gains, biases and base weights to
    int8 with one symmetric scale per tensor. Heads that shared an fp32 codebook share its
    int8 one when converted with the same `books` dict."""
    books = {} if books is None else books
    new = {}
    for name, layer in kan_layers(net).items():
        book = layer.codebook
        if id(book) not in books:
            books[id(book)] = Codebook(book.values(), "int8").requires_grad_(False)
        numbers = {n: layer.number(n) for n in EDGE_NUMBERS}
        new[name] = share_layer(layer, books[id(book)], layer.indices, numbers, "int8")
    return replace_layers(net, new)


def save_heads(heads: list[nn.Module], directory: Path, method: str) -> dict[str, int]:
    """Write heads that share codebooks (quantize_heads) as one codebook file plus one file
    per head; returns each file's tensor bytes by name."""
    directory.mkdir(parents=True, exist_ok=True)
    save_codebooks(heads[0], directory / "codebooks.safetensors")
    for i, head in enumerate(heads):
        save_compressed(head, directory / f"head{i}.safetensors", method, with_codebooks=False)
    return {path.name: safetensors_payload_bytes(path)
            for path in sorted(directory.glob("*.safetensors"))}


def share_skeleton(net: nn.Module, codes: int, precision: str) -> nn.Module:
    """The structure quantize_heads / to_int8 make of (a copy of) a dense or SHARe net, with
    zero tensors: what a cached state dict loads into."""
    net = copy.deepcopy(net)
    new = {}
    for name, layer in kan_layers(net).items():
        edges = tuple(layer.edge_shape)
        count = math.prod(edges)
        codebook = Codebook(torch.zeros(min(codes, count), layer.spec.n_coef), precision)
        zeros = {n: torch.zeros(edges) for n in EDGE_NUMBERS}
        new[name] = share_layer(layer, codebook.requires_grad_(False),
                                torch.zeros(edges, dtype=torch.long), zeros, precision)
    return replace_layers(net, new)
