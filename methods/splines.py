"""B-spline bases on a uniform grid and the memory-lean spline term of a KAN layer.

On the uniform grid t_j = lo + h (j - k), j = 0..G+2k, an input x lies in interval
m = floor((x - t_0) / h) at fraction f, and only the k+1 bases B_{m-k}..B_m are non-zero.
Their values follow from the Cox-de Boor recursion restricted to those k+1 values, where
uniform spacing turns every ratio of knot differences into a function of f alone:

    v_r^(p) = ((f + p - r) v_{r-1}^(p-1) + (r + 1 - f) v_r^(p-1)) / p,   r = 0..p.

Each v_r^(k) is therefore a fixed polynomial of degree k in f: `basis_matrix(k)` expands
the recursion once, and the layer evaluates all k+1 values (and their derivatives) by
Horner's rule, one fused multiply-add per degree. Nothing of size G is touched until the values are
scattered into (or gathered against) the G+k coefficients.

`spline_linear` is an autograd Function that saves only its input and the coefficients,
recomputes the bases in backward and walks the batch in chunks of rows, so training memory
grows with batch x in, not with batch x in x (G+2k) x recursion levels as under plain
autograd through the recursion.
`recursive_bases` keeps efficient-kan's formulation: the benchmark's baseline and the
tests' old path.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from numpy.polynomial import polynomial as P


@functools.cache
def basis_matrix(k: int) -> np.ndarray:
    """(k+1, k+1): row r holds the coefficients (in powers f^0..f^k) of the r-th non-zero
    basis as a polynomial of the fraction f, from the local recursion above."""
    polys = [np.array([1.0])]
    for p in range(1, k + 1):
        rise = [P.polymul([p - r, 1.0], polys[r - 1]) if r > 0 else 0 for r in range(p + 1)]
        fall = [P.polymul([r + 1.0, -1.0], polys[r]) if r < p else 0 for r in range(p + 1)]
        polys = [P.polyadd(a, b) / p for a, b in zip(rise, fall, strict=True)]
    return np.stack([np.pad(c, (0, k + 1 - len(c))) for c in polys])


def _local(x: torch.Tensor, spec, derivatives: bool = False):
    """Per input: the k+1 non-zero basis values, the slot of each (basis j sits in slot
    j + k of a row padded with k slots on each side) and, if asked, their derivatives.
    x: (...,) -> values (..., k+1), slots (..., k+1) int64, derivs (..., k+1) or None.
    Inputs outside the extended grid get all-zero values and derivatives."""
    k, G = spec.spline_order, spec.grid_size
    lo, hi = spec.grid_range
    h = (hi - lo) / G
    u = (x - lo) * (1 / h) + k                                       # (...,) position in knots
    m = torch.floor(u)
    inside = (m >= 0) & (m <= G + 2 * k - 1)                         # False for nan and inf
    slots = torch.where(inside, m, 0).long().unsqueeze(-1) + torch.arange(k + 1,
                                                                         device=x.device)
    inside = inside.unsqueeze(-1)                                    # (..., 1)
    f = (u - m).unsqueeze(-1)                                        # (..., 1) in [0, 1)
    coeffs = torch.as_tensor(basis_matrix(k), dtype=x.dtype, device=x.device)
    values = _horner(coeffs, f) * inside                             # (..., k+1)
    derivs = None
    if derivatives:  # d/dx of f^d is d f^(d-1) / h
        slope = coeffs[:, 1:] * torch.arange(1, k + 1, device=x.device, dtype=x.dtype) / h
        derivs = _horner(slope, f) * inside if k else torch.zeros_like(values)
    return values, slots, derivs


def _horner(coeffs: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Evaluate the k+1 polynomials (rows of coeffs, ascending powers) at f: (..., 1) ->
    (..., k+1), one fused multiply-add per degree."""
    out = coeffs[:, -1].expand(*f.shape[:-1], coeffs.shape[0])
    for degree in range(coeffs.shape[1] - 2, -1, -1):
        out = torch.addcmul(coeffs[:, degree], out, f)
    return out


def local_bases(x: torch.Tensor, spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The k+1 non-zero bases of each input and the index of the first:
    x (...,) -> values (..., k+1), first (...,). Values whose basis index falls outside
    0..G+k-1 (and all values of inputs outside the extended grid) are zero."""
    values, slots, _ = _local(x, spec)
    index = slots - spec.spline_order
    return values * ((index >= 0) & (index < spec.n_coef)), index[..., 0]


def dense_bases(x: torch.Tensor, spec) -> torch.Tensor:
    """All G+k bases: x (...,) -> (..., G+k), by scattering the k+1 local values."""
    values, slots, _ = _local(x, spec)
    return _scatter(values, slots, spec)


def _scatter(values: torch.Tensor, slots: torch.Tensor, spec) -> torch.Tensor:
    """(..., k+1) values at their slots -> (..., G+k) dense bases."""
    k = spec.spline_order
    padded = values.new_zeros(*values.shape[:-1], spec.n_coef + 2 * k)  # (..., G+3k)
    return padded.scatter_(-1, slots, values)[..., k:k + spec.n_coef]


def recursive_bases(x: torch.Tensor, spec) -> torch.Tensor:
    """efficient-kan's formulation: Cox-de Boor over all knots. x (...,) -> (..., G+k)."""
    x = x.unsqueeze(-1)                                              # (..., 1)
    t = spec.knots(x.dtype, x.device)                                # (G+2k+1,)
    bases = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)                # (..., G+2k)
    for p in range(1, spec.spline_order + 1):
        left = (x - t[: -(p + 1)]) / (t[p:-1] - t[: -(p + 1)]) * bases[..., :-1]
        right = (t[p + 1:] - x) / (t[p + 1:] - t[1:-p]) * bases[..., 1:]
        bases = left + right                                         # (..., G+2k-p)
    return bases                                                     # (..., G+k)


# Inputs per chunk of rows: small enough that a chunk's temporaries stay in cache (and in
# the allocator's reuse) instead of being faulted in fresh for every elementwise op.
CHUNK_INPUTS = 2**17


def _row_chunks(x: torch.Tensor) -> list[slice]:
    rows = max(1, CHUNK_INPUTS // x.shape[1])
    return [slice(i, i + rows) for i in range(0, x.shape[0], rows)]


class SplineLinear(torch.autograd.Function):
    """y = B(x).flatten(1) @ coef.flatten(1).T, saving only x and coef for backward and
    working through the batch in chunks of rows, so no (batch, in, G+k) tensor is held."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coef: torch.Tensor, spec) -> torch.Tensor:
        # x: (batch, in), coef: (out, in, G+k) -> (batch, out)
        ctx.spec = spec
        ctx.save_for_backward(x, coef)
        weight = coef.flatten(1).T                                   # (in*(G+k), out)
        return torch.cat([dense_bases(x[rows], spec).flatten(1) @ weight
                          for rows in _row_chunks(x)])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, coef = ctx.saved_tensors
        spec, k = ctx.spec, ctx.spec.spline_order
        want_x, want_coef = ctx.needs_input_grad[:2]
        grad_x = torch.empty_like(x) if want_x else None
        grad_coef = torch.zeros_like(coef).flatten(1) if want_coef else None  # (out, in*(G+k))
        for rows in _row_chunks(x):
            g = grad_out[rows]                                       # (chunk, out)
            values, slots, derivs = _local(x[rows], spec, derivatives=want_x)  # (chunk, in, k+1)
            if want_coef:
                grad_coef.addmm_(g.T, _scatter(values, slots, spec).flatten(1))
            if want_x:
                back = (g @ coef.flatten(1)).view(*x[rows].shape, spec.n_coef)
                back = torch.nn.functional.pad(back, (k, k))         # (chunk, in, G+3k)
                grad_x[rows] = (back.gather(-1, slots) * derivs).sum(-1)
        return grad_x, (grad_coef.view_as(coef) if want_coef else None), None


def spline_linear(x: torch.Tensor, coef: torch.Tensor, spec) -> torch.Tensor:
    """The spline term of a KAN layer: (batch, in), (out, in, G+k) -> (batch, out)."""
    return SplineLinear.apply(x, coef, spec)
