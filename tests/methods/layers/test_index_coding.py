"""Entropy-coded codebook indices: the range-ANS stream round-trips bit for bit, costs the
empirical-entropy bound plus a few bytes, and a damaged stream is refused in one line."""

import json
import math
import struct

import pytest
import torch

from kanbench.methods.layers.codebook import (
    ans_decode,
    ans_encode,
    cluster_edges,
    code_indices,
    codebook_skeleton,
    entropy_bytes,
)
from kanbench.methods.layers.files import (
    load_compressed,
    safetensors_payload_bytes,
    save_compressed,
)
from kanbench.methods.layers.kan import kan_layers
from kanbench.suite.errors import KanbenchError
from kanbench.suite.measure import storage
from tests.methods.layers.test_codebook import corrupt, meta_net


def sample(codes: int, count: int, concentration: float, seed: int = 0) -> torch.Tensor:
    """(count,) indices drawn from a random distribution over `codes` codes (Dirichlet)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.distributions.Dirichlet(torch.full((codes,), concentration)).sample() \
        if codes > 1 else torch.ones(1)
    return torch.multinomial(p, count, replacement=True, generator=g) if count else \
        torch.zeros(0, dtype=torch.long)


@pytest.mark.parametrize("codes", [1, 2, 3, 16, 256])
@pytest.mark.parametrize("count", [0, 1, 7, 5000])
@pytest.mark.parametrize("concentration", [0.1, 1.0, 100.0])
def test_ans_round_trips_bit_for_bit(codes, count, concentration):
    indices = sample(codes, count, concentration, seed=codes + count)
    stream, counts = ans_encode(indices, codes)
    assert stream.dtype == torch.uint8 and stream.numel() % 4 == 0
    assert counts.tolist() == torch.bincount(indices, minlength=codes).tolist()
    assert torch.equal(ans_decode(stream, counts, count, codes), indices)


@pytest.mark.parametrize("codes,count", [(16, 50_816), (8, 50_176), (256, 100_000)])
def test_the_stream_is_within_one_percent_of_the_entropy_bound(codes, count):
    indices = sample(codes, count, 0.5)
    bound = entropy_bytes(indices, codes)
    stream, _ = ans_encode(indices, codes)
    assert bound <= stream.numel() <= 1.01 * bound
    assert stream.numel() < math.ceil(count * math.log2(codes) / 8)   # below the packed bytes


def test_a_single_used_code_costs_almost_nothing_and_one_code_nothing():
    stream, _ = ans_encode(torch.full((10_000,), 3), 16)
    assert stream.numel() <= 8
    stream, counts = ans_encode(torch.zeros(100, dtype=torch.long), 1)
    assert stream.numel() == 0 and counts.tolist() == [100]


def test_damaged_streams_and_tables_raise():
    indices = sample(16, 2000, 0.5)
    stream, counts = ans_encode(indices, 16)
    flipped = stream.clone()
    flipped[len(stream) // 2] ^= 0x5A
    other = counts.clone()
    other[0], other[1] = other[0] + 1, other[1] - 1
    for bad_stream, bad_counts, count in [(flipped, counts, 2000), (stream[:-4], counts, 2000),
                                          (stream[:-1], counts, 2000), (stream, other, 2000),
                                          (stream, counts, 1999), (stream, -counts, 2000)]:
        with pytest.raises(ValueError):
            ans_decode(bad_stream, bad_counts, count, 16)


@pytest.mark.parametrize("scope", ["model", "layer"])
@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
def test_an_entropy_coded_file_holds_the_itemized_bytes_and_loads_bit_exact(scope, conv,
                                                                            tmp_path):
    net = cluster_edges(meta_net(conv), 7, scope, "fp16", seed=0)
    packed = storage(net)
    net = code_indices(net, "ans")
    coded = storage(net)
    layers = kan_layers(net).values()
    assert coded["itemized"]["index_tables"] == 7 * 4 * len(layers)
    assert coded["itemized"]["indices"] == sum(m.coded_indices()[0].numel() for m in layers)
    assert coded["indices_entropy_bytes"] == packed["indices_entropy_bytes"]
    path = tmp_path / "model.safetensors"
    save_compressed(net, path, method="metacluster")
    assert safetensors_payload_bytes(path) == coded["total_bytes"]
    loaded = load_compressed(path, codebook_skeleton(meta_net(conv, seed=1), 7, scope, "fp16"))
    assert all(m.index_coding == "ans" for m in kan_layers(loaded).values())
    for a, b in zip(layers, kan_layers(loaded).values(), strict=True):
        assert torch.equal(a.indices, b.indices)
    x = torch.randn(2, 3, 8, 8) if conv else torch.randn(4, 12)
    net.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    # saved again, the file is the same bytes
    again = tmp_path / "again.safetensors"
    save_compressed(loaded, again, method="metacluster")
    assert again.read_bytes() == path.read_bytes()


def flip_stream(tensors, header):
    tensors["0.indices"][len(tensors["0.indices"]) // 2] ^= 0x5A


DAMAGE = {
    "flipped stream byte": flip_stream,
    "truncated stream": lambda t, h: t.update({"0.indices": t["0.indices"][:-4]}),
    "ragged stream": lambda t, h: t.update({"0.indices": t["0.indices"][:-1]}),
    "another layer's table": lambda t, h: t.update({"0.index_counts": t["1.index_counts"] * 1}),
    "table as int64": lambda t, h: t.update({"0.index_counts": t["0.index_counts"].long()}),
    "missing table": lambda t, h: t.pop("0.index_counts"),
    "2-D stream": lambda t, h: t.update({"0.indices": t["0.indices"].reshape(2, -1)}),
    "unknown coding": lambda t, h: h["layers"]["0"].update(coding="huffman"),
    "packed header, coded tensors": lambda t, h: h["layers"]["0"].update(coding="packed"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_coded_file_is_refused_in_one_line_and_nothing_loads(name, tmp_path):
    bad = corrupt(tmp_path, DAMAGE[name], coding="ans")
    skeleton = codebook_skeleton(meta_net(), 5, "model", "fp32")
    before = {k: v.clone() for k, v in skeleton.state_dict().items()}
    with pytest.raises(KanbenchError) as err:
        load_compressed(bad, skeleton)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    for k, v in skeleton.state_dict().items():
        assert torch.equal(v, before[k])


def test_the_header_says_how_each_layer_is_coded(tmp_path):
    path = tmp_path / "m.safetensors"
    save_compressed(code_indices(cluster_edges(meta_net(), 5, "model", "fp32", seed=0), "ans"),
                    path, method="metacluster")
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(json.loads(path.read_bytes()[8:8 + length])["__metadata__"]["kanbench"])
    assert {entry["coding"] for entry in header["layers"].values()} == {"ans"}
