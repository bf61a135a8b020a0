"""The k-means seed: set apart from the cell's seed, it changes the clustering and nothing
else; unset, the cell's seed clusters, as before the setting existed."""

import copy
from types import SimpleNamespace

import pytest
import torch

from kanbench.methods.layers.architectures import KAN
from kanbench.methods.layers.kan import DenseKANFactory, KANSpec, kan_layers
from kanbench.suite.config import resolve
from kanbench.suite.registry import METHODS


def quantize(method: str, kmeans_seed: int | None, cell_seed: int = 0) -> list[torch.Tensor]:
    """The per-edge indices after the method's clustering stage on one fixed trained net."""
    torch.manual_seed(0)
    net = KAN([6, 40, 3], DenseKANFactory(KANSpec(5, 3)))
    args = resolve("g", "digits", method, cell_seed,
                   {"method": {"kmeans_seed": kmeans_seed, "codebook_size": 8}}).args["method"]
    stage = next(s for s in METHODS.create(method).stages(args) if s.name in ("cluster", "vq"))
    ctx = SimpleNamespace(cfg=SimpleNamespace(seed=cell_seed))
    out = stage.run(ctx, copy.deepcopy(net))
    return [m.indices.clone() for m in kan_layers(out).values()]


@pytest.mark.parametrize("method", ["dense_kmeans", "share_fp32"])
def test_the_kmeans_seed_alone_changes_the_clustering(method):
    unset = quantize(method, None, cell_seed=0)
    assert all(torch.equal(a, b) for a, b in zip(unset, quantize(method, 0, cell_seed=5),
                                                 strict=True))
    others = [quantize(method, seed) for seed in (1, 2, 3)]
    assert any(not torch.equal(a, b) for indices in others
               for a, b in zip(unset, indices, strict=True))
