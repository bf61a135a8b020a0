"""The CPU codebook forward.

Compiled (gather.cpp), in the order that suits the batch, neither rebuilding a weight:
- small batches (the outputs order): the inputs in chunks, one thread per chunk; per input
  the table T[b, i, c] = B(x_bi) . codes[c] of every batch row, made in L1, then one pass
  along the outputs reading the uint8 indices and int8/fp32 per-edge numbers once for the
  whole batch (AVX-512 gathers where the CPU has them); the chunks' partial sums are added
  in order, so a result does not depend on the thread count;
- larger ones (the batch order): blocks of batch rows whose tables are made in cache, a few
  inputs at a time, every edge adding one scaled table row to its output (vectorized over
  the batch).
The batch order takes over at BATCH_ORDER_FROM rows for layers with per-edge numbers
(SHARe's gains, biases and base weights) and at CODES_ONLY_BATCH_ORDER_FROM for layers that
read only codes and indices (MetaCluster), where the outputs order's table costs more than
its one load per edge saves: both from the order table of scripts/bench_gather.py
(results/bench/gather_order.csv).

Where no C++ compiler is present, PyTorch stands in: the same table and a gather for batches
<= GATHER_MAX_BATCH, the weights rebuilt from the codebook TILE_WEIGHTS numbers at a time and
multiplied for larger ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kanbench.methods.layers.kan import layer_bases
from kanbench.methods.layers.kernels import build
from kanbench.methods.layers.splines import inference_bases

BATCH_ORDER_FROM = 16
CODES_ONLY_BATCH_ORDER_FROM = 4
COMPILED_MAX_BASES = 64  # gather.cpp's kMaxDim: longer codes go through PyTorch
GATHER_MAX_BATCH = 16
TILE_WEIGHTS = 2**20  # numbers of a rebuilt weight tile (4 MiB in float32)


def compiled():
    """The gather.cpp extension (methods.layers.kernels.build), or None where it cannot be built:
    the PyTorch orders stand in."""
    return build.load("gather")


def inference_layer_bases(x: torch.Tensor, spec) -> torch.Tensor:
    """Every basis of every input, B-splines through the C++ spline kernel where it is built:
    x (batch, in) -> (batch, in, n_coef), contiguous. Inference only: no gradient flows."""
    with torch.no_grad():
        bases = inference_bases(x, spec) if spec.basis == "bspline" else layer_bases(x, spec)
    return bases.contiguous()


def basis_inputs(x: torch.Tensor, layer, spec, activation):
    """bases (batch, in, C) (act(x) appended when the codes carry the base weight), their
    sums over the coefficient bases (batch, in) or None, and act(x) (batch, in)."""
    acts = activation(x)                                              # (batch, in)
    bases = inference_layer_bases(x, spec)                            # (batch, in, n_coef)
    sums = bases.sum(-1) if layer.biases is not None else None
    if layer.codes_carry_base:
        bases = torch.cat([bases, acts.unsqueeze(-1)], -1)            # (batch, in, n_coef+1)
    return bases, sums, acts


def compiled_forward(x, layer, spec, activation, batch_order: bool,
                     portable: bool = False) -> torch.Tensor:
    """gather.cpp in the order asked for: x (batch, in) -> (batch, out). The kernel takes the
    bases and act(x) apart and sums the bases itself; `portable` keeps the outputs order off
    its AVX-512 path where the CPU has one (tests check both)."""
    bases = inference_layer_bases(x, spec)                            # (batch, in, n_coef)
    with torch.no_grad():
        acts = activation(x).contiguous()                             # (batch, in)
    parts = (layer.gains, layer.biases, layer.base)
    return compiled().forward(bases, acts, layer.codes, layer.indices,
                              *(p.data if p else None for p in parts),
                              *(p.scale if p else 1.0 for p in parts), batch_order, portable)


def torch_gather(x, layer, spec, activation) -> torch.Tensor:
    bases, sums, acts = basis_inputs(x, layer, spec, activation)
    table = torch.matmul(bases, layer.codes.T)                        # (batch, in, K)
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


ORDERS = {"outputs": lambda *a: compiled_forward(*a, batch_order=False),
          "batch": lambda *a: compiled_forward(*a, batch_order=True),
          "torch_gather": torch_gather, "torch_rebuilt": rebuilt_matmul}


def reads_codes_only(layer) -> bool:
    """Whether the layer reads only codes and indices (no per-edge gains, biases or base
    weights): MetaCluster's form, whose batch order pays from fewer rows."""
    return layer.gains is None and layer.biases is None and layer.base is None


def pick_order(batch: int, use_compiled: bool, n_bases: int = 0,
               codes_only: bool = False) -> str:
    """The order `forward` runs a batch of a layer with `n_bases` bases in; `codes_only`: the
    layer has no per-edge numbers (`reads_codes_only`)."""
    if use_compiled and n_bases <= COMPILED_MAX_BASES and compiled() is not None:
        switch = CODES_ONLY_BATCH_ORDER_FROM if codes_only else BATCH_ORDER_FROM
        return "outputs" if batch < switch else "batch"
    return "torch_gather" if batch <= GATHER_MAX_BATCH else "torch_rebuilt"


def forward(x: torch.Tensor, layer, spec, activation, use_compiled: bool = True) -> torch.Tensor:
    """x (batch, in) float32 -> (batch, out)."""
    x = x.float()
    order = pick_order(x.shape[0], use_compiled and x.device.type == "cpu", spec.n_coef,
                       reads_codes_only(layer))
    return ORDERS[order](x, layer, spec, activation)
