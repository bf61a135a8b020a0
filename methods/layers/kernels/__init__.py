"""The compressed forward of a codebook KAN layer, without materializing its coefficients.

Edge (o, i) of a codebook layer holds an index into K codes of C numbers, an optional gain
g and bias b, and optionally its own base weight w:

    y[b, o] = sum_i  g_oi * (B(x_bi) . codes[idx_oi]) + b_oi * sum_j B_j(x_bi) + w_oi * act(x_bi)

With C = n_coef the codes are shapes (SHARe-KAN); with C = n_coef + 1 the last number of a
code is the edge's base weight (MetaCluster: gain 1, bias 0, no per-edge base weight), which
the kernels treat as one more basis whose value is act(x).

Kernels, all computing that same function:
    reference  float64 reconstruction of the dense coefficients, then the dense layer; tests
    cpu        compiled (methods/layers/kernels/gather.cpp), no weight rebuilt: small
               batches make the table T[b, i, c] = B(x_bi) . codes[c] and stream the uint8
               indices and int8/fp32 per-edge numbers along the outputs; larger ones make
               the tables of blocks of batch rows and inputs in cache and add one table row
               per edge, vectorized over the batch (methods/layers/kernels/cpu.py)
    torch      plain PyTorch, where no C++ compiler is present: the table and a gather for
               small batches, weights rebuilt tile by tile and multiplied for larger ones
    triton     CUDA: bases, gather and accumulation fused, codes read from on-chip cache
`pick_kernel` chooses triton on CUDA and cpu (else torch) on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EdgeValues:
    """One number per edge, stored transposed (in, out) so a kernel streams it along the
    outputs: float32 with scale 1, or int8 with its per-tensor scale (value = q * scale)."""

    data: torch.Tensor          # (in, out) float32 or int8
    scale: float = 1.0

    def dequantized(self) -> torch.Tensor:
        return self.data.float() * self.scale                        # (in, out)


@dataclass(frozen=True)
class PackedCodebookLayer:
    """A codebook layer in the layout the kernels read, built once per weight version."""

    codes: torch.Tensor                # (K, C) float32, C = n_coef or n_coef + 1
    indices: torch.Tensor              # (in, out) uint8 when K <= 256, else int32
    gains: EdgeValues | None           # per-edge gain (None: 1)
    biases: EdgeValues | None          # per-edge bias (None: 0)
    base: EdgeValues | None            # per-edge base weight (None: the codes carry it)

    @property
    def in_features(self) -> int:
        return self.indices.shape[0]

    @property
    def out_features(self) -> int:
        return self.indices.shape[1]

    @property
    def codes_carry_base(self) -> bool:
        return self.base is None


def pack(codes: torch.Tensor, indices: torch.Tensor, gains=None, biases=None,
         base=None) -> PackedCodebookLayer:
    """Kernel layout from layer tensors: indices (out, in); gains, biases, base each None, a
    float tensor (out, in), or a pair (int8 tensor (out, in), scale)."""

    def values(v) -> EdgeValues | None:
        if v is None:
            return None
        data, scale = v if isinstance(v, tuple) else (v.float(), 1.0)
        return EdgeValues(data.detach().t().contiguous(), float(scale))

    index_dtype = torch.uint8 if codes.shape[0] <= 256 else torch.int32
    return PackedCodebookLayer(codes.detach().float().contiguous(),
                               indices.detach().t().to(index_dtype).contiguous(),
                               values(gains), values(biases), values(base))


KERNELS = ("reference", "torch", "cpu", "triton")


def pick_kernel(device: torch.device, spec=None) -> str:
    """triton on CUDA (for the B-spline/SiLU layers it computes, else torch); on the CPU the
    compiled gather, or plain PyTorch where it cannot be built."""
    if device.type == "cuda":
        return "triton" if spec is None or (spec.basis == "bspline" and
                                            spec.base_activation == "silu") else "torch"
    if device.type != "cpu":
        return "torch"
    from kanbench.methods.layers.kernels import cpu
    return "cpu" if cpu.compiled() is not None else "torch"


def codebook_linear(x: torch.Tensor, layer: PackedCodebookLayer, spec, activation,
                    kernel: str | None = None) -> torch.Tensor:
    """The codebook layer's forward with the named kernel (default `pick_kernel`):
    x (..., in) -> (..., out)."""
    kernel = kernel or pick_kernel(x.device, spec)
    lead = x.shape[:-1]
    flat = x.reshape(-1, layer.in_features)                          # (batch, in)
    if kernel == "reference":
        from kanbench.methods.layers.kernels.reference import forward
    elif kernel in ("cpu", "torch"):
        from kanbench.methods.layers.kernels import cpu
        y = cpu.forward(flat, layer, spec, activation, use_compiled=kernel == "cpu")
        return y.reshape(*lead, layer.out_features)
    elif kernel == "triton":
        from kanbench.methods.layers.kernels.triton_gather import forward
    else:
        raise ValueError(f"unknown kernel {kernel!r}; one of {', '.join(KERNELS)}")
    return forward(flat, layer, spec, activation).reshape(*lead, layer.out_features)
