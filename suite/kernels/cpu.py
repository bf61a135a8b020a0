"""The CPU codebook forward, in the order that suits the batch:

- batch <= GATHER_MAX_BATCH: the table T[b, i, c] = B(x_bi) . codes[c] (one small matmul),
  then per output a gather from it driven by the indices, with gains, biases and base
  weights read once each (compiled: gather.cpp; else PyTorch's gather);
- larger batches: the weights are rebuilt from the codebook TILE_WEIGHTS numbers at a time
  and multiplied (the gather's work grows with batch x edges, a matmul's far more slowly).
GATHER_MAX_BATCH comes from scripts/bench_gather.py (results/bench/gather.csv).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from methods.kan import layer_bases

GATHER_MAX_BATCH = 16
TILE_WEIGHTS = 2**20  # numbers of a rebuilt weight tile (4 MiB in float32)

log = logging.getLogger(__name__)


SOURCE = Path(__file__).with_name("gather.cpp")
# Portable flags: no -march=native, so a build on one node runs on every node that shares the
# checkout. Where the compiler supports it, gather.cpp's hot loop is cloned for AVX2 and the
# CPU picks its clone at load time (target_clones).
CFLAGS, LDFLAGS = ("-O3", "-fopenmp"), ("-fopenmp",)
KERNEL_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "kanbench" / "kernels"


def build_directory() -> tuple[Path, str]:
    """Where this version of the kernel is built, and its module name: both keyed by a hash of
    the source, the flags, the compiler named by $CXX, torch and Python, so a second checkout
    or another torch builds beside the first instead of over it. The root is the checkout's
    .cache/kanbench/kernels, or $KANBENCH_KERNEL_CACHE."""
    import torch.version

    identity = repr((CFLAGS, LDFLAGS, os.environ.get("CXX", "c++"), torch.version.__version__,
                     sys.version)).encode()
    key = hashlib.sha256(SOURCE.read_bytes() + identity).hexdigest()[:16]
    root = Path(os.environ.get("KANBENCH_KERNEL_CACHE") or KERNEL_CACHE)
    return root / f"gather-{key}", f"kanbench_gather_{key}"


@functools.cache
def compiled():
    """The gather.cpp extension, built the first time this source version is used on this
    machine (one line says so), loaded from its build directory after that; None where it
    cannot be built (no compiler): the PyTorch gather stands in."""
    from torch.utils import cpp_extension
    try:
        import ninja  # the pip package's binary, in case the system has none on PATH
        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
    except ImportError:
        pass
    directory, name = build_directory()
    building = not (directory / f"{name}.so").exists()
    if building:
        print(f"kanbench: compiling the codebook gather kernel into {directory} (once per "
              "source version, about a minute)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        module = cpp_extension.load(name=name, sources=[str(SOURCE)],
                                    build_directory=str(directory), extra_cflags=list(CFLAGS),
                                    extra_ldflags=list(LDFLAGS))
    except (OSError, RuntimeError, ImportError, SystemExit) as err:
        log.warning("codebook gather kernel not built (%s); using the PyTorch gather",
                    str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None
    if building:
        print(f"kanbench: gather kernel built in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    return module


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
