"""Codebook layers, k-means, bit packing and the compressed-model file."""

import json
import math
import os
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kanbench.methods.layers.architectures import KAN, ConvKAN
from kanbench.methods.layers.codebook import (
    Codebook,
    CodebookKANLinear,
    cluster_edges,
    code_indices,
    codebook_skeleton,
    entropy_bytes,
    index_bits,
    kmeans,
    pack_indices,
    packed_bytes,
    unpack_indices,
)
from kanbench.methods.layers.files import (
    load_compressed,
    safetensors_payload_bytes,
    save_compressed,
)
from kanbench.methods.layers.kan import DenseKANFactory, KANLinear, KANSpec, kan_layers
from kanbench.methods.layers.metakan import MetaKANFactory
from kanbench.suite.errors import KanbenchError
from kanbench.suite.measure import storage

SPEC = KANSpec(5, 3, spline_scaler=False)


@pytest.mark.parametrize("codes", [1, 2, 3, 16, 256, 1000])
@pytest.mark.parametrize("count", [0, 1, 7, 1001])
def test_bit_packing_round_trips_at_ceil_log2_bits(codes, count):
    indices = torch.randint(0, codes, (count,), generator=torch.Generator().manual_seed(codes))
    packed = pack_indices(indices, codes)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_bytes(count, codes) == \
        math.ceil(count * math.ceil(math.log2(codes)) / 8)
    assert torch.equal(unpack_indices(packed, count, codes), indices)


def test_packing_refuses_out_of_range_indices():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        pack_indices(torch.tensor([0, 3]), 3)
    assert index_bits(1) == 0 and index_bits(2) == 1 and index_bits(1000) == 10


def test_entropy_bound():
    assert entropy_bytes(torch.zeros(100, dtype=torch.long), 16) == 0
    uniform = torch.arange(256).repeat(4)
    assert entropy_bytes(uniform, 256) == pytest.approx(1024 * 8 / 8)
    skewed = torch.tensor([0] * 90 + [1] * 10)
    h = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert entropy_bytes(skewed, 4) == pytest.approx(100 * h / 8)


def test_kmeans_assigns_every_vector_its_nearest_code():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 9, generator=g) * 10
    data = centres[torch.randint(0, 8, (2000,), generator=g)] + \
        0.01 * torch.randn(2000, 9, generator=g)
    codebook, assignments = kmeans(data, 8, seed=0)
    assert codebook.shape == (8, 9) and assignments.shape == (2000,)
    nearest = torch.cdist(data, codebook).argmin(1)
    assert torch.equal(assignments, nearest)
    inertia = (data - codebook[assignments]).square().sum()
    assert inertia < 2000 * 9 * 0.01**2 * 2                          # found the true clusters


def test_kmeans_with_fewer_vectors_than_codes_keeps_each_vector():
    data = torch.randn(5, 3)
    codebook, assignments = kmeans(data, 16, seed=0)
    assert torch.equal(codebook, data) and torch.equal(assignments, torch.arange(5))


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference-kernel"])
def test_codebook_layer_equals_the_dense_layer_built_from_its_codes(grad):
    torch.manual_seed(0)
    codebook = Codebook(torch.randn(4, SPEC.n_coef + 1))
    indices = torch.randint(0, 4, (3, 6))
    layer = CodebookKANLinear(6, 3, SPEC, codebook, indices)
    codes = codebook.codes.detach()[indices]                         # (3, 6, D)
    dense = KANLinear(6, 3, SPEC)
    with torch.no_grad():
        dense.spline_weight.copy_(codes[..., :-1])
        dense.base_weight.copy_(codes[..., -1])
    x = torch.rand(10, 6) * 3 - 1.5
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(layer(x), dense(x))


def test_the_kernel_layout_follows_fine_tuning_of_the_codebook():
    torch.manual_seed(0)
    layer = CodebookKANLinear(6, 3, SPEC, Codebook(torch.randn(4, SPEC.n_coef + 1)),
                              torch.randint(0, 4, (3, 6)))
    x = torch.rand(5, 6)
    with torch.no_grad():
        before = layer(x)
        layer.codebook.codes.add_(1.0)
        after = layer(x)
    with torch.enable_grad():
        torch.testing.assert_close(after, layer(x).detach())
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_the_kernel_layout_follows_a_fused_adamw_step(dtype):
    """Fused AdamW writes the codes in place without bumping their version: the training
    forward before it drops the layout, so the next no-grad forward sees the new codes (an
    fp16 codebook's layout is a copy, so a stale one would show)."""
    torch.manual_seed(0)
    layer = CodebookKANLinear(6, 3, SPEC, Codebook(torch.randn(4, SPEC.n_coef + 1), dtype),
                              torch.randint(0, 4, (3, 6)))
    x = torch.rand(5, 6)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True)
    for _ in range(2):
        with torch.no_grad():
            layer(x)                                                 # packs the layout
        layer(x).square().sum().backward()
        optimizer.step()
    version = layer.codebook.codes._version
    with torch.no_grad():
        got = layer(x)
    with torch.enable_grad():
        torch.testing.assert_close(got, layer(x).detach(), rtol=1e-6, atol=1e-6)
    assert layer.codebook.codes._version == version      # the step did not bump it


def meta_net(conv: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    factory = MetaKANFactory(SPEC, 1, 8)
    return ConvKAN([4, 6], [1, 2], 3, 5, factory) if conv else KAN([12, 8, 3], factory)


def dense_net(conv: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    factory = DenseKANFactory(KANSpec(5, 3))                 # with scalers, folded into edges
    return ConvKAN([4, 6], [1, 2], 3, 5, factory) if conv else KAN([12, 8, 3], factory)


@pytest.mark.parametrize("scope", ["model", "layer"])
@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
@pytest.mark.parametrize("make", [meta_net, dense_net], ids=["generated", "dense"])
def test_clustering_replaces_every_edge_by_its_centroid(scope, conv, make):
    net = make(conv)
    with torch.no_grad():
        before = {n: m.edge_weights() for n, m in kan_layers(net).items()}
        dense_bytes = sum(m.dense_bytes() for m in kan_layers(net).values())
    net = cluster_edges(net, 5, scope, "fp32", seed=0)
    books = {id(m.codebook) for m in kan_layers(net).values()}
    assert len(books) == (1 if scope == "model" else len(before))
    assert set(kan_layers(net)) == set(before)
    assert storage(net)["dense_kan_bytes"] == dense_bytes
    for name, layer in kan_layers(net).items():
        assert isinstance(layer.indices, torch.Tensor) and layer.codebook.size == 5
        after = layer.edge_weights()                               # (*edges, D)
        assert torch.equal(after, layer.codebook.codes[layer.indices])
        # each edge got the code nearest to its own weights
        dist = torch.cdist(before[name].reshape(-1, after.shape[-1]), layer.codebook.codes)
        assert torch.equal(dist.argmin(1), layer.indices.flatten())


def test_storage_is_packed_indices_plus_each_codebook_once():
    net = cluster_edges(meta_net(), 5, "model", "fp16", seed=0)
    s = storage(net)
    edges = 12 * 8 + 8 * 3
    assert s["itemized"] == {"codebook": 5 * 9 * 2, "indices": math.ceil(12 * 8 * 3 / 8) +
                             math.ceil(8 * 3 * 3 / 8), "other": 0}
    assert s["dense_kan_bytes"] == edges * 9 * 4                   # no scaler in SPEC
    assert 0 < s["indices_entropy_bytes"] <= edges * 3 / 8


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
def test_file_round_trip_is_bit_exact_and_its_size_is_the_itemized_bytes(dtype, conv,
                                                                         tmp_path):
    net = cluster_edges(meta_net(conv), 7, "layer" if conv else "model", dtype, seed=0)
    path = tmp_path / "model.safetensors"
    save_compressed(net, path, method="metacluster")
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert path.stat().st_size == storage(net)["total_bytes"] + 8 + header_len
    assert safetensors_payload_bytes(path) == storage(net)["total_bytes"]
    loaded = load_compressed(path, codebook_skeleton(meta_net(conv, seed=1), 7,
                                                     "layer" if conv else "model", dtype))
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        want = a.to(torch.float16).float() if name.endswith("codes") and dtype == "fp16" else a
        assert torch.equal(want, b), name
    x = torch.randn(2, 3, 8, 8) if conv else torch.randn(4, 12)
    net.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def corrupt(tmp_path, change, coding: str = "packed"):
    """A good file (its indices stored `coding`), then `change(tensors, header)` applied and
    written back."""
    net = code_indices(cluster_edges(meta_net(), 5, "model", "fp32", seed=0), coding)
    good = tmp_path / "good.safetensors"
    save_compressed(net, good, method="metacluster")
    tensors = load_file(good)
    header = json.loads(json.loads(good.read_bytes()[8:8 + struct.unpack(
        "<Q", good.read_bytes()[:8])[0]])["__metadata__"]["kanbench"])
    change(tensors, header)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata={"kanbench": json.dumps(header)})
    return bad


def out_of_range(tensors, header):
    # 5 codes need 3 bits; code 7 fits in the bits but not in the codebook
    tensors["0.indices"] = pack_indices(torch.full((96,), 7), 8)


CORRUPTIONS = {
    "wrong dtype": lambda t, h: t.update({"codebooks.0": t["codebooks.0"].double()}),
    "wrong shape": lambda t, h: t.update({"codebooks.0": t["codebooks.0"][:4]}),
    "missing tensor": lambda t, h: t.pop("1.indices"),
    "extra tensor": lambda t, h: t.update({"surprise": torch.zeros(1)}),
    "index out of range": out_of_range,
    "other header": lambda t, h: h.update(format="something else"),
    "other layers": lambda t, h: h["layers"].pop("1"),
    "codebooks not a list": lambda t, h: h.update(codebooks=3),
    "layers not a mapping": lambda t, h: h.update(layers=["0", "1"]),
    "nan codebook": lambda t, h: t["codebooks.0"].view(-1)[0].fill_(float("nan")),
    "inf codebook": lambda t, h: t["codebooks.0"].view(-1)[-1].fill_(float("inf")),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_bad_files_are_refused_with_one_clear_line(name, tmp_path):
    bad = corrupt(tmp_path, CORRUPTIONS[name])
    skeleton = codebook_skeleton(meta_net(), 5, "model", "fp32")
    before = {k: v.clone() for k, v in skeleton.state_dict().items()}
    with pytest.raises(KanbenchError) as err:
        load_compressed(bad, skeleton)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    for k, v in skeleton.state_dict().items():                      # nothing half-loaded
        assert torch.equal(v, before[k])


def test_truncated_and_foreign_files_are_refused(tmp_path):
    net = cluster_edges(meta_net(), 5, "model", "fp32", seed=0)
    good = tmp_path / "good.safetensors"
    save_compressed(net, good, method="metacluster")
    skeleton = codebook_skeleton(meta_net(), 5, "model", "fp32")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-10])
    pickled = tmp_path / "pickled.pt"
    torch.save({"a": np.zeros(3)}, pickled)
    for path in (truncated, pickled):
        with pytest.raises(KanbenchError, match="not a readable safetensors file"):
            load_compressed(path, skeleton)
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    (tmp_path / "folder.safetensors").mkdir()
    for name in ("missing", "fifo", "folder"):
        with pytest.raises(KanbenchError,
                           match=f"^compressed model: .*{name}.safetensors: not a regular file$"):
            load_compressed(tmp_path / f"{name}.safetensors", skeleton)


@pytest.mark.parametrize("scope", ["model", "layer"])
@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
@pytest.mark.parametrize("make", [meta_net, dense_net], ids=["generated", "dense"])
def test_the_skeleton_has_the_clustered_structure_of_any_kan(scope, conv, make):
    clustered = cluster_edges(make(conv), 5, scope, "fp32", seed=0)
    skeleton = codebook_skeleton(make(conv), 5, scope, "fp32")
    assert [type(m) for m in skeleton.modules()] == [type(m) for m in clustered.modules()]
    assert {k: v.shape for k, v in skeleton.state_dict().items()} == \
        {k: v.shape for k, v in clustered.state_dict().items()}
    skeleton.load_state_dict(clustered.state_dict())


def test_a_network_without_kan_layers_has_nothing_to_cluster():
    with pytest.raises(ValueError, match="no KAN layers"):
        cluster_edges(torch.nn.Sequential(torch.nn.Linear(3, 2)), 4, "model", "fp32", seed=0)
