"""Codebook compression of KAN edges: k-means, bit-packed indices and their sizes.

Every edge of a KAN layer carries one coefficient vector (its basis coefficients and its base
weight). A codebook method replaces each vector by one of K shared codes and stores, per
edge, only the index of that code: ceil(log2 K) bits, packed (DESIGN.md's storage rule).
"""

from __future__ import annotations

import math

import faiss
import numpy as np
import torch


def index_bits(codes: int) -> int:
    """Bits per index into `codes` codes: ceil(log2 K) (0 for a single code)."""
    if codes < 1:
        raise ValueError(f"a codebook needs at least one code, got {codes}")
    return math.ceil(math.log2(codes))


def packed_bytes(count: int, codes: int) -> int:
    """Bytes of `count` indices into `codes` codes, bit-packed: ceil(N ceil(log2 K) / 8)."""
    return math.ceil(count * index_bits(codes) / 8)


def pack_indices(indices: torch.Tensor, codes: int) -> torch.Tensor:
    """(N,) integer indices in [0, K) -> (packed_bytes(N, K),) uint8, least significant bit
    first, index after index."""
    bits = index_bits(codes)
    flat = indices.detach().cpu().flatten().numpy().astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= codes):
        raise ValueError(f"indices must lie in [0, {codes})")
    planes = (flat[:, None] >> np.arange(bits)) & 1                  # (N, bits)
    return torch.from_numpy(np.packbits(planes.astype(np.uint8).ravel(), bitorder="little"))


def unpack_indices(packed: torch.Tensor, count: int, codes: int) -> torch.Tensor:
    """Inverse of `pack_indices`: (packed_bytes(N, K),) uint8 -> (N,) int64."""
    bits = index_bits(codes)
    if packed.dtype != torch.uint8 or packed.numel() != packed_bytes(count, codes):
        raise ValueError(f"expected {packed_bytes(count, codes)} uint8 bytes for {count} "
                         f"indices of {bits} bits, got {packed.numel()} {packed.dtype}")
    planes = np.unpackbits(packed.numpy(), count=count * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.int64))                 # (bits,)
    return torch.from_numpy(planes.reshape(count, bits).astype(np.int64) @ weights)


def entropy_bytes(indices: torch.Tensor, codes: int) -> float:
    """The empirical-entropy bound on the indices' size: N H(p) / 8 bytes, p their histogram."""
    counts = torch.bincount(indices.flatten().cpu(), minlength=codes).double()
    p = counts[counts > 0] / counts.sum()
    return max(0.0, float(-(p * p.log2()).sum() * indices.numel() / 8))


def kmeans(vectors: torch.Tensor, codes: int, seed: int, iterations: int = 25
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """faiss k-means on every vector (no subsampling): (N, D) -> codebook (K', D) float32,
    assignments (N,) int64, with K' = min(K, N) (a network with fewer edges than codes keeps
    one code per edge)."""
    data = np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype=np.float32)
    count, dim = data.shape
    codes = min(codes, count)
    if codes == count:  # every vector is its own code
        return torch.from_numpy(data.copy()), torch.arange(count)
    km = faiss.Kmeans(dim, codes, niter=iterations, seed=seed, verbose=False,
                      min_points_per_centroid=1,
                      max_points_per_centroid=math.ceil(count / codes) + 1)
    km.train(data)
    _, assignments = km.index.search(data, 1)                         # (N, 1)
    return torch.from_numpy(km.centroids.copy()), torch.from_numpy(assignments[:, 0]).long()
