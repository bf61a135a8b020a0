"""The CPU codebook forward, in the order that suits the batch:

- batch <= GATHER_MAX_BATCH: the table T[b, i, c] = B(x_bi) . codes[c] (one small matmul),
  then per output a gather from it driven by the indices, with gains, biases and base
  weights read once each (compiled: gather.cpp; else PyTorch's gather);
- larger batches: the weights are rebuilt from the codebook TILE_WEIGHTS numbers at a time
  and multiplied (the gather's work grows with batch x edges, a matmul's far more slowly).
GATHER_MAX_BATCH comes from scripts/bench_gather.py (results/bench/gather.csv).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kanbench.methods.layers.kan import layer_bases
from kanbench.methods.layers.kernels import build

GATHER_MAX_BATCH = 16
TILE_WEIGHTS = 2**20  # numbers of a rebuilt weight tile (4 MiB in float32)


def compiled():
    """The gather.cpp extension (methods.layers.kernels.build), or None where it cannot be built:
    the PyTorch gather stands in."""
    return build.load("gather")


def basis_inputs(x: torch.Tensor, layer, spec, activation):
    """bases (batch, in, C) (act(x) appended when the codes carry the base weight), their
    sums over the coefficient bases (batch, in) or None, and act(x) (batch, in)."""
    acts = activation(x)                                              # (batch, in)
    bases = layer_bases(x, spec)                                      # (batch, in, n_coef)
    sums = bases.sum(-1) if layer.biases is not None else None
    if layer.codes_carry_base:
        bases = torch.cat([bases, acts.unsqueeze(-1)], -1)            # (batch, in, n_coef+1)
    return bases, sums, acts


def gather(x, layer, spec, activation, use_compiled: bool) -> torch.Tensor:
    bases, sums, acts = basis_inputs(x, layer, spec, activation)
    table = torch.matmul(bases, layer.codes.T).contiguous()           # (batch, in, K)
    extension = compiled() if use_compiled else None
    if extension is not None:
        parts = (layer.gains, layer.biases, layer.base)
        return extension.gather(table, sums, acts if layer.base else None, layer.indices,
                                *(p.data if p else None for p in parts),
                                *(p.scale if p else 1.0 for p in parts))
    index = layer.indices.long().expand(x.shape[0], -1, -1)           # (batch, in, out)
    picked = table.gather(2, index)                                   # (batch, in, out)
    if layer.gains is not None:
        picked = picked * layer.gains.dequantized()
    y = picked.sum(1)                                                 # (batch, out)
    if layer.biases is not None:
        y = y + sums @ layer.biases.dequantized()
    if layer.base is not None:
        y = y + acts @ layer.base.dequantized()
    return y


def rebuilt_matmul(x, layer, spec, activation) -> torch.Tensor:
    bases, sums, acts = basis_inputs(x, layer, spec, activation)
    flat = bases.flatten(1)                                           # (batch, in * C)
    n_in, n_out = layer.indices.shape
    tile = max(1, TILE_WEIGHTS // (n_in * layer.codes.shape[1]))
    y = torch.empty(x.shape[0], n_out, dtype=torch.float32, device=x.device)
    for o0 in range(0, n_out, tile):
        cols = slice(o0, min(o0 + tile, n_out))
        weight = F.embedding(layer.indices[:, cols].t().long(), layer.codes)  # (tile, in, C)
        if layer.gains is not None:
            weight.mul_(layer.gains.data[:, cols].t().float().unsqueeze(-1))
            weight.mul_(layer.gains.scale)
        y[:, cols] = F.linear(flat, weight.flatten(1))                # (batch, tile)
    # a bias adds b to each of its edge's coefficients: b times the sum of the bases
    if layer.biases is not None:
        y += sums @ layer.biases.dequantized()
    if layer.base is not None:
        y += acts @ layer.base.dequantized()
    return y


def forward(x: torch.Tensor, layer, spec, activation, use_compiled: bool = True) -> torch.Tensor:
    """x (batch, in) float32 -> (batch, out)."""
    x = x.float()
    if x.shape[0] <= GATHER_MAX_BATCH:
        return gather(x, layer, spec, activation, use_compiled and x.device.type == "cpu")
    return rebuilt_matmul(x, layer, spec, activation)
