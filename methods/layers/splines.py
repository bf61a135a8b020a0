"""B-spline bases on a uniform grid and the memory-lean spline term of a KAN layer.

On the uniform grid t_j = lo + h (j - k), j = 0..G+2k, an input x lies in interval
m = floor((x - t_0) / h) at fraction f, and only the k+1 bases B_{m-k}..B_m are non-zero.
Their values follow from the Cox-de Boor recursion restricted to those k+1 values, where
uniform spacing turns every ratio of knot differences into a function of f alone:

    v_r^(p) = ((f + p - r) v_{r-1}^(p-1) + (r + 1 - f) v_r^(p-1)) / p,   r = 0..p.

Each v_r^(k) is therefore a fixed polynomial of degree k in f: `basis_matrix(k)` expands
the recursion once, and the layer evaluates the k+1 values (and their derivatives) by
Horner's rule with scalar coefficients. Nothing of size G is touched until the values are
scatter-added into (or gathered against) the G+k coefficients.

`spline_linear` is the spline term of a layer. For training it is an autograd Function that
saves only its input and the coefficients, recomputes the bases in backward and walks the
batch in chunks of rows, so training memory grows with batch x in, not with batch x in x
(G+2k) x recursion levels as under plain autograd through the recursion. (A CSR product of
the k+1 values per input was tried for inference and lost to the dense product on every
shape `scripts/bench_kan.py` times, so there is none.)
`recursive_bases` keeps efficient-kan's formulation: the benchmark's baseline and the
tests' old path.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from numpy.polynomial import polynomial as P

warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")


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
    """Per input: the k+1 non-zero basis values, the index of the basis each belongs to and,
    if asked, their derivatives. x: (...,) -> values (..., k+1), index (..., k+1) int64,
    derivs (..., k+1) or None.

    A value whose basis falls outside 0..G+k-1 (the input sits in the extension knots or
    beyond the extended grid) is zero and its index is clamped into range, so the k+1 values
    can be scatter-added into, or gathered against, the G+k coefficients without padding.
    Non-finite inputs give nan values, so a diverged network surfaces as a nan loss."""
    k, n = spec.spline_order, spec.n_coef
    u = _knot_position(x, spec)                                      # (...,)
    m = torch.floor(u)
    f = u - m                                                        # (...,) in [0, 1)
    # basis of value r is m - k + r; the int cast of a non-finite m is garbage, but clamped
    offsets = torch.arange(-k, 1, device=x.device)
    unclamped = m.long().unsqueeze(-1) + offsets                     # (..., k+1)
    index = unclamped.clamp(0, n - 1)
    valid = index == unclamped                                       # (..., k+1)
    coeffs = basis_matrix(k)
    values = _horner(coeffs, f) * valid                              # (..., k+1)
    derivs = None
    if derivatives:  # d/dx of f^d is d f^(d-1) / h
        slope = coeffs[:, 1:] * np.arange(1, k + 1) / _knot_spacing(spec)
        derivs = _horner(slope, f) * valid if k else torch.zeros_like(values)
    return values, index, derivs


def _knot_spacing(spec) -> float:
    lo, hi = spec.grid_range
    return (hi - lo) / spec.grid_size


def _knot_position(x: torch.Tensor, spec) -> torch.Tensor:
    """u = (x - t_0) / h: x lies in knot interval floor(u) at fraction u - floor(u)."""
    h = _knot_spacing(spec)
    return x * (1 / h) + (spec.spline_order - spec.grid_range[0] / h)


def _horner(coeffs: np.ndarray, f: torch.Tensor) -> torch.Tensor:
    """Evaluate the polynomials in the rows of coeffs (ascending powers) at f by Horner's
    rule with scalar coefficients, one contiguous (...,) tensor per polynomial:
    f (...,) -> (..., rows). Much faster on CPU than broadcasting (rows,) against (..., 1)."""
    columns = []
    for row in coeffs.tolist():
        value = torch.full_like(f, row[-1])
        for c in reversed(row[:-1]):
            value = value.mul_(f).add_(c)
        columns.append(value)
    return torch.stack(columns, -1)


def local_bases(x: torch.Tensor, spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The k+1 non-zero bases of each input and the index of the first:
    x (...,) -> values (..., k+1), first (...,). Values whose basis index falls outside
    0..G+k-1 (and all values of inputs outside the extended grid) are zero."""
    values, _, _ = _local(x, spec)
    first = torch.floor(_knot_position(x, spec)).long() - spec.spline_order
    return values, first


def dense_bases(x: torch.Tensor, spec) -> torch.Tensor:
    """All G+k bases: x (...,) -> (..., G+k), by scatter-adding the k+1 local values."""
    values, index, _ = _local(x, spec)
    return _scatter(values, index, spec)


def _scatter(values: torch.Tensor, index: torch.Tensor, spec) -> torch.Tensor:
    """(..., k+1) values at their basis indices -> (..., G+k) dense bases. Adding (not
    writing) lets the zeroed out-of-range values share a clamped index with a real one."""
    dense = values.new_zeros(*values.shape[:-1], spec.n_coef)        # (..., G+k)
    return dense.scatter_add_(-1, index, values)


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
    """y = B(x).flatten(1) @ (coef * scaler).flatten(1).T, saving only x, coef and scaler for
    backward and working through the batch in chunks of rows, so no (batch, in, G+k) tensor
    is held. The scaler (out, in) (efficient-kan's spline_scaler, or None) is applied inside:
    its product with coef lives only while a product needs it, and the coefficient gradient
    is scaled in place: a training step makes three coefficient-sized tensors (the product
    in forward, the gradient and the product again in backward), at most two alive at once,
    where a separate multiply before it makes four, all alive in backward.
    On the CPU the bases and the input gradient come from the C++ kernel (`_kernel_for`),
    around the same BLAS products."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coef: torch.Tensor, scaler: torch.Tensor | None,
                spec) -> torch.Tensor:
        # x: (batch, in), coef: (out, in, G+k), scaler: (out, in) or None -> (batch, out)
        ctx.spec = spec
        x = x.contiguous()
        ctx.save_for_backward(x, coef, scaler)
        kernel = _kernel_for(x)
        weight = scaled_coefficients(coef, scaler).flatten(1).T      # (in*(G+k), out)
        y = x.new_empty(x.shape[0], coef.shape[0])
        for rows in _row_chunks(x):
            torch.mm(_expand(x[rows], spec, kernel).flatten(1), weight, out=y[rows])
        return y

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, coef, scaler = ctx.saved_tensors
        spec = ctx.spec
        kernel = _kernel_for(x)
        want_x, want_coef, want_scaler = ctx.needs_input_grad[:3]
        grad_x = torch.empty_like(x) if want_x else None
        # the gradient of the scaled coefficients, (out, in*(G+k))
        grad_w = None  # written by the first chunk of rows: zeros only if there is none
        if want_coef or want_scaler:
            grad_w = (torch.empty_like if len(x) else torch.zeros_like)(coef).flatten(1)
        weight = (scaled_coefficients(coef, scaler).flatten(1)        # (out, in*(G+k))
                  if want_x else None)
        for chunk, rows in enumerate(_row_chunks(x)):
            g = grad_out[rows]                                       # (chunk, out)
            if grad_w is not None:  # the first chunk writes it, the others add
                bases = _expand(x[rows], spec, kernel).flatten(1)    # (chunk, in*(G+k))
                grad_w.addmm_(g.T, bases, beta=1 if chunk else 0)
            if want_x:
                back = (g @ weight).view(*x[rows].shape, spec.n_coef)  # (chunk, in, G+k)
                grad_x[rows] = _input_grad(back, x[rows], spec, kernel)
        grad_w = grad_w.view_as(coef) if grad_w is not None else None
        grad_scaler = _scaler_grad(grad_w, coef) if want_scaler else None
        if grad_w is not None and scaler is not None:
            grad_w.mul_(scaler.unsqueeze(-1))                        # now d/d coef
        return grad_x, (grad_w if want_coef else None), grad_scaler, None


def scaled_coefficients(coef: torch.Tensor, scaler: torch.Tensor | None) -> torch.Tensor:
    """(out, in, G+k) coefficients times their (out, in) scaler, if any."""
    return coef if scaler is None else coef * scaler.unsqueeze(-1)


# outputs per block of the scaler gradient's product, so its temporary stays in cache
SCALER_GRAD_OUTPUTS = 64


def _scaler_grad(grad_w: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """d/d scaler = sum_j grad_w[o, i, j] coef[o, i, j]: (out, in, G+k) x 2 -> (out, in), a
    block of outputs at a time."""
    grad = coef.new_empty(coef.shape[:2])
    for o in range(0, coef.shape[0], SCALER_GRAD_OUTPUTS):
        block = slice(o, o + SCALER_GRAD_OUTPUTS)
        torch.sum(grad_w[block] * coef[block], -1, out=grad[block])
    return grad


# SplineLinear's bases and input gradient from the C++ kernel on the CPU, where it is built:
# two calls in place of `_local`'s dozens of small tensor operations (scripts/bench_train.py).
BASES_KERNEL = True


def _kernel_for(x: torch.Tensor):
    """The spline extension if x can go through it, else None (the tensor operations)."""
    if not (BASES_KERNEL and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)):
        return None
    from kanbench.methods.layers.kernels import build

    return build.load("spline")


def _grid_arguments(spec) -> tuple[torch.Tensor, float, float]:
    """The kernel's description of the grid: the local bases' polynomials, 1 / h and the
    offset of `_knot_position`."""
    h = _knot_spacing(spec)
    return (torch.from_numpy(basis_matrix(spec.spline_order)), 1 / h,
            spec.spline_order - spec.grid_range[0] / h)


def _expand(x: torch.Tensor, spec, kernel) -> torch.Tensor:
    """x (chunk, in) -> all bases (chunk, in, G+k)."""
    if kernel is None:
        return dense_bases(x, spec)
    return kernel.bases(x, *_grid_arguments(spec), spec.n_coef)


def inference_bases(x: torch.Tensor, spec) -> torch.Tensor:
    """All G+k bases of every input through the C++ kernel where it is built, for inference
    (no gradient flows through it): x (batch, in) -> (batch, in, G+k)."""
    return _expand(x, spec, _kernel_for(x))


def _input_grad(back: torch.Tensor, x: torch.Tensor, spec, kernel) -> torch.Tensor:
    """back (chunk, in, G+k) = grad_y @ W^T, x (chunk, in) -> grad_x (chunk, in)."""
    if kernel is not None:
        return kernel.input_grad(back, x, *_grid_arguments(spec))
    values, index, derivs = _local(x, spec, derivatives=True)        # (chunk, in, k+1)
    return (back.gather(-1, index) * derivs).sum(-1)


class FusedSplineLinear(torch.autograd.Function):
    """SplineLinear's function in one C++ pass each way (methods/layers/kernels/spline.cpp): the k+1
    local bases of each input are evaluated in registers and contracted with the
    coefficients, forward and backward, so a tiny layer costs two calls, and no
    (batch, in, G+k) tensor is ever formed."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coef: torch.Tensor, spec) -> torch.Tensor:
        # x: (batch, in), coef: (out, in, G+k) -> (batch, out)
        ctx.grid = _grid_arguments(spec)
        x = x.contiguous()
        w = coef.permute(1, 2, 0).contiguous()                       # (in, G+k, out)
        ctx.save_for_backward(x, w)
        return _spline_extension().forward(x, w, *ctx.grid)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, w = ctx.saved_tensors
        want_x, want_coef = ctx.needs_input_grad[:2]
        grad_x, grad_w = _spline_extension().backward(grad_out, x, w, *ctx.grid, want_x,
                                                      want_coef)
        return (grad_x if want_x else None,
                grad_w.permute(2, 0, 1) if want_coef else None, None)  # (out, in, G+k)


def _spline_extension():
    from kanbench.methods.layers.kernels import build

    extension = build.load("spline")
    if extension is None:
        raise RuntimeError("the fused spline kernel could not be built (no C++ compiler?)")
    return extension


# Layers of up to this many edges (in x out) run through FusedSplineLinear on the CPU, where
# its two C++ calls beat the tensor path's handful of operations; from about 100 edges on,
# the tensor path's BLAS products win (scripts/bench_train.py, scripts/bench_kan.py).
FUSED_MAX_EDGES = 64


def use_fused(x: torch.Tensor, coef: torch.Tensor) -> bool:
    """The fused kernel for a small float layer on the CPU, where it could be built."""
    from kanbench.methods.layers.kernels import build

    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and coef.shape[0] * coef.shape[1] <= FUSED_MAX_EDGES
            and build.load("spline") is not None)


def spline_linear(x: torch.Tensor, coef: torch.Tensor, spec, fused: bool | None = None,
                  scaler: torch.Tensor | None = None) -> torch.Tensor:
    """The spline term of a KAN layer: (batch, in), (out, in, G+k) and a scaler (out, in) or
    None -> (batch, out). `fused` forces FusedSplineLinear on or off; None picks by
    `use_fused`."""
    if use_fused(x, coef) if fused is None else fused:
        return FusedSplineLinear.apply(x, scaled_coefficients(coef, scaler), spec)
    return SplineLinear.apply(x, coef, scaler, spec)
