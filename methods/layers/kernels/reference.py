"""The obviously correct codebook forward: rebuild every edge's coefficients in float64 and
run the dense KAN layer on them. Slow and memory-hungry by design; tests compare to it."""

from __future__ import annotations

import torch

from kanbench.methods.layers.kan import layer_bases


def dense_weights(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (out, in, n_coef) coefficients and (out, in) base weights of a packed layer."""
    codes = layer.codes.double()[layer.indices.t().long()]             # (out, in, C)
    if layer.codes_carry_base:
        return codes[..., :-1], codes[..., -1]
    gains = layer.gains.dequantized().t().double() if layer.gains else 1.0
    biases = layer.biases.dequantized().t().double() if layer.biases else 0.0
    coef = codes * torch.as_tensor(gains).unsqueeze(-1) + torch.as_tensor(biases).unsqueeze(-1)
    return coef, layer.base.dequantized().t().double()


def forward(x: torch.Tensor, layer, spec, activation) -> torch.Tensor:
    """x (batch, in) -> (batch, out), computed in float64, returned in x's dtype."""
    coef, base = dense_weights(layer)
    x64 = x.double()
    bases = layer_bases(x64, spec)                                     # (batch, in, n_coef)
    y = activation(x64) @ base.T + torch.einsum("bij,oij->bo", bases, coef)
    return y.to(x.dtype)
