"""The codebook KAN forward as one Triton kernel for CUDA GPUs (B-spline basis, SiLU base).

A program owns a (BLOCK_B rows x BLOCK_O outputs) tile of y and walks the inputs in blocks of
BLOCK_I. For each block it evaluates the G+k B-spline bases of its inputs in registers (the
closed-form cardinal B-spline, no knot tensor), gathers each edge's code from the small
codebook (it stays in L1/L2: K x C floats), applies gain and bias, and accumulates
bases @ rebuilt-tile with tl.dot. Dense coefficients never exist outside one on-chip tile.

CI has no GPU: tests run this file in Triton's interpreter on CPU tensors, against the
reference. TRITON_INTERPRET=1 must be set before Triton is first imported in the process
(tests/conftest.py does), because Triton's own library functions are decorated then.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

BLOCK_B, BLOCK_O, BLOCK_I = 16, 32, 32


@triton.jit
def cardinal_bspline(u, ORDER: tl.constexpr, INV_FACTORIAL: tl.constexpr):
    """The uniform B-spline of order k on knots 0..k+1 at u (any shape), by truncated powers:
    N(u) = 1/k! sum_r (-1)^r C(k+1, r) max(u - r, 0)^k, zero outside [0, k+1)."""
    inside = (u >= 0.0) & (u < ORDER + 1.0)
    if ORDER == 0:
        return inside.to(tl.float32)
    value = tl.zeros_like(u)
    weight = INV_FACTORIAL
    for r in tl.static_range(ORDER + 2):
        t = tl.maximum(u - r, 0.0)
        power = t
        for _ in tl.static_range(ORDER - 1):
            power = power * t
        value += weight * power
        weight = -weight * (ORDER + 1 - r) / (r + 1)
    return tl.where(inside, value, 0.0)


@triton.jit
def codebook_kan_kernel(x_ptr, codes_ptr, idx_ptr, gains_ptr, biases_ptr, base_ptr, y_ptr,
                        gain_scale, bias_scale, base_scale, n_rows, n_in, n_out, grid_lo,
                        knot_step, N_COEF: tl.constexpr, ORDER: tl.constexpr,
                        INV_FACTORIAL: tl.constexpr, CODE_DIM: tl.constexpr,
                        GAIN_BIAS: tl.constexpr, EDGE_BASE: tl.constexpr,
                        BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)           # (BB,)
    outs = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)           # (BO,)
    acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float32)
    for i0 in range(0, n_in, BLOCK_I):
        ins = i0 + tl.arange(0, BLOCK_I)                                # (BI,)
        x_mask = (rows[:, None] < n_rows) & (ins[None, :] < n_in)
        x = tl.load(x_ptr + rows[:, None] * n_in + ins[None, :], mask=x_mask, other=0.0)
        act = x * tl.sigmoid(x)                                         # (BB, BI) silu
        edge_mask = (ins[:, None] < n_in) & (outs[None, :] < n_out)
        edge = ins[:, None] * n_out + outs[None, :]                     # (BI, BO), (in, out)
        idx = tl.load(idx_ptr + edge, mask=edge_mask, other=0).to(tl.int32)
        if GAIN_BIAS:
            gain = tl.load(gains_ptr + edge, mask=edge_mask, other=0).to(tl.float32) * gain_scale
            bias = tl.load(biases_ptr + edge, mask=edge_mask, other=0).to(tl.float32) * bias_scale
        if EDGE_BASE:
            base = tl.load(base_ptr + edge, mask=edge_mask, other=0).to(tl.float32) * base_scale
            acc += tl.dot(act, base, input_precision="ieee")
        else:  # the code's last number is the edge's base weight
            base = tl.load(codes_ptr + idx * CODE_DIM + N_COEF, mask=edge_mask, other=0.0)
            acc += tl.dot(act, base, input_precision="ieee")
        knot_units = (x - grid_lo) / knot_step + ORDER                  # (BB, BI)
        for j in tl.static_range(N_COEF):
            basis = cardinal_bspline(knot_units - j, ORDER, INV_FACTORIAL)  # (BB, BI)
            coef = tl.load(codes_ptr + idx * CODE_DIM + j, mask=edge_mask, other=0.0)
            if GAIN_BIAS:
                coef = tl.where(edge_mask, gain * coef + bias, 0.0)     # (BI, BO)
            acc += tl.dot(basis, coef, input_precision="ieee")
    y_mask = (rows[:, None] < n_rows) & (outs[None, :] < n_out)
    tl.store(y_ptr + rows[:, None] * n_out + outs[None, :], acc, mask=y_mask)


def supports(spec) -> bool:
    return spec.basis == "bspline" and spec.base_activation == "silu"


def forward(x: torch.Tensor, layer, spec, activation) -> torch.Tensor:
    """x (batch, in) -> (batch, out) float32, one kernel launch."""
    if not supports(spec):
        raise ValueError("the triton kernel computes B-spline layers with a SiLU base; "
                         f"got basis={spec.basis}, base_activation={spec.base_activation}")
    x = x.float().contiguous()
    n_rows, n_out = x.shape[0], layer.out_features
    y = torch.empty(n_rows, n_out, dtype=torch.float32, device=x.device)
    unused = layer.indices  # a valid pointer for the arguments a constexpr flag leaves unread
    gains, biases, base = layer.gains, layer.biases, layer.base
    lo, hi = spec.grid_range
    grid = (triton.cdiv(n_rows, BLOCK_B), triton.cdiv(n_out, BLOCK_O))
    codebook_kan_kernel[grid](
        x, layer.codes, layer.indices, gains.data if gains else unused,
        biases.data if biases else unused, base.data if base else unused, y,
        gains.scale if gains else 1.0, biases.scale if biases else 1.0,
        base.scale if base else 1.0, n_rows, layer.in_features, n_out, float(lo),
        (hi - lo) / spec.grid_size, N_COEF=spec.n_coef, ORDER=spec.spline_order,
        INV_FACTORIAL=1.0 / math.factorial(spec.spline_order),
        CODE_DIM=layer.codes.shape[1], GAIN_BIAS=gains is not None, EDGE_BASE=base is not None,
        BLOCK_B=BLOCK_B, BLOCK_O=BLOCK_O, BLOCK_I=BLOCK_I)
    return y
