"""The non-spline bases an edge can carry, besides `methods.layers.splines`' B-splines:

- rbf  (FastKAN): the layer's inputs are layer-normalized (no affine parameters, so an edge
  stays one coefficient vector), then expanded in Gaussian radial basis functions
  exp(-((x - c_j) / h)^2) on `rbf_centers` evenly spaced centres c_j over `rbf_range`,
  h the centre spacing.
- gram (KAGN-style): Gram polynomials of degree 0..`gram_degree` in tanh(x), by the
  three-term recurrence of orthogonal polynomials on [-1, 1]
      P_0 = 1,  P_1 = t,  P_{n+1} = t P_n - beta_n P_{n-1},  beta_n = n^2 / (4 n^2 - 1),
  with the betas fixed (KAGN learns them per layer; fixed betas keep every edge's state one
  coefficient vector, which is what the compression methods cluster).
Each returns x (...,) -> (..., n_coef); the layer multiplies them against the coefficients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rbf_bases(x: torch.Tensor, spec) -> torch.Tensor:
    """Gaussian RBFs: x (...,) -> (..., rbf_centers)."""
    lo, hi = spec.rbf_range
    centres = torch.linspace(lo, hi, spec.rbf_centers, dtype=x.dtype, device=x.device)
    width = (hi - lo) / max(spec.rbf_centers - 1, 1)
    return torch.exp(-((x.unsqueeze(-1) - centres) / width).square())


def gram_bases(x: torch.Tensor, spec) -> torch.Tensor:
    """Gram polynomials of tanh(x): x (...,) -> (..., gram_degree + 1)."""
    t = torch.tanh(x)
    polys = [torch.ones_like(t), t][: spec.gram_degree + 1]
    for n in range(1, spec.gram_degree):
        polys.append(t * polys[n] - (n * n / (4 * n * n - 1)) * polys[n - 1])
    return torch.stack(polys, -1)


def normalize(x: torch.Tensor, spec, dim: int = -1) -> torch.Tensor:
    """What the basis sees of the layer input: layer-normalized over the feature (channel)
    dimension `dim` for rbf, unchanged otherwise."""
    if spec.basis != "rbf":
        return x
    moved = x.movedim(dim, -1)
    return F.layer_norm(moved, moved.shape[-1:]).movedim(-1, dim)


BASES = {"rbf": rbf_bases, "gram": gram_bases}


def basis_values(x: torch.Tensor, spec) -> torch.Tensor:
    """x (...,) -> (..., n_coef) for the rbf and gram bases."""
    return BASES[spec.basis](x, spec)
