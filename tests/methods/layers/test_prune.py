"""Magnitude-pruned KAN layers: the smallest edges go, the rest compute what the dense layer
with those edges zeroed computes (float64 reference), and the file holds the itemized bytes."""

import copy
import math

import pytest
import torch

from kanbench.methods.layers.architectures import KAN, ConvKAN
from kanbench.methods.layers.codebook import unpack_indices
from kanbench.methods.layers.files import (
    load_compressed,
    safetensors_payload_bytes,
    save_compressed,
)
from kanbench.methods.layers.kan import DenseKANFactory, KANSpec, kan_layers
from kanbench.methods.layers.prune import (
    kept_count,
    kept_positions,
    pack_mask,
    prune_edges,
    prune_skeleton,
)
from kanbench.suite.config import resolve
from kanbench.suite.errors import KanbenchError
from kanbench.suite.measure import storage

SPECS = {"bspline": KANSpec(5, 3), "rbf": KANSpec(basis="rbf", spline_scaler=False),
         "gram": KANSpec(basis="gram", spline_scaler=False),
         "bspline_unscaled": KANSpec(5, 3, spline_scaler=False),
         "rbf_scaled": KANSpec(basis="rbf", spline_scaler=True)}


def dense(widths, spec, seed=0):
    torch.manual_seed(seed)
    return KAN(widths, DenseKANFactory(spec))


@pytest.mark.parametrize("basis", list(SPECS))
@pytest.mark.parametrize("widths", [[7, 5, 3], [1, 1], [13, 2]])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9])
def test_pruned_layers_compute_the_dense_layer_with_the_small_edges_zeroed(basis, widths,
                                                                          sparsity):
    net = dense(widths, SPECS[basis])
    reference = dense(widths, SPECS[basis]).double()
    pruned = prune_edges(net, sparsity)
    x = torch.randn(9, widths[0]) * 3                       # many inputs outside the grid
    for layer, ref in zip(kan_layers(pruned).values(), kan_layers(reference).values(),
                          strict=True):
        edges = math.prod(layer.edge_shape)
        with torch.no_grad():
            vectors = ref.edge_weights().reshape(edges, -1)             # (E, D) float64
        norms = vectors.norm(dim=1)
        removed = edges - kept_count(edges, sparsity)
        gone = ~unpack_indices(layer.mask, edges, 2).bool()
        assert int(gone.sum()) == removed and layer.kept_edges == edges - removed
        if removed:                                         # the removed are the smallest
            assert norms[gone].max() <= norms[~gone].min()
        with torch.no_grad():                               # zero them in the reference
            zeroed = ref.spline_weight.reshape(edges, -1)
            zeroed[gone] = 0
            ref.base_weight.reshape(-1)[gone] = 0
    with torch.no_grad():
        torch.testing.assert_close(pruned(x).double(), reference(x.double()), rtol=1e-5,
                                   atol=1e-5)
        torch.testing.assert_close(pruned(x[:1]).double(), reference(x[:1].double()),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
def test_the_pruned_edges_are_those_of_smallest_hand_computed_norm(conv):
    """The norm of an edge: its coefficients (scaled) and its base weight, as the layer holds
    them, computed by hand here."""
    factory = DenseKANFactory(KANSpec(5, 3))
    torch.manual_seed(0)
    net = ConvKAN([4], [1], 2, 3, factory) if conv else KAN([5, 3], factory)
    layer = next(iter(kan_layers(net).values()))
    if conv:
        out, c, kh, kw = layer.edge_shape
        coef = layer.spline_conv.weight.reshape(out, c, 8, kh, kw).permute(0, 1, 3, 4, 2)
        base = layer.base_conv.weight
    else:
        coef, base = layer.spline_weight * layer.spline_scaler[..., None], layer.base_weight
    norms = (coef.square().sum(-1) + base.square()).sqrt().detach().flatten()    # (E,)
    pruned = next(iter(kan_layers(prune_edges(net, 0.5)).values()))
    gone = ~unpack_indices(pruned.mask, len(norms), 2).bool()
    assert set(gone.nonzero()[:, 0].tolist()) == \
        set(norms.argsort()[:len(norms) - kept_count(len(norms), 0.5)].tolist())


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_pruned_convolutions_compute_the_dense_ones_with_the_small_edges_zeroed(basis):
    factory = DenseKANFactory(SPECS[basis])
    torch.manual_seed(0)
    net = ConvKAN([4, 5], [1, 2], 3, 2, factory).eval()
    reference = copy.deepcopy(net).double()
    pruned = prune_edges(net, 0.6)
    for layer, ref in zip(kan_layers(pruned).values(), kan_layers(reference).values(),
                          strict=True):
        edges = math.prod(layer.edge_shape)
        gone = ~unpack_indices(layer.mask, edges, 2).bool()
        assert int(gone.sum()) == round(0.6 * edges)
        with torch.no_grad():
            norms = ref.edge_weights().norm(dim=-1).flatten()          # (E,)
            kept = layer.edge_weights().norm(dim=-1).flatten().double()
            torch.testing.assert_close(kept, norms * ~gone)             # the kept norms stay
            if hasattr(ref, "base_conv"):
                out, c, kh, kw = ref.edge_shape
                keep = (~gone).double().reshape(out, c, 1, kh, kw)
                ref.base_conv.weight.mul_(keep[:, :, 0])                  # (out, in, kh, kw)
                ref.spline_conv.weight.view(out, c, -1, kh, kw).mul_(keep)  # (out, in, D, kh, kw)
            else:
                ref.spline_weight.reshape(edges, -1)[gone] = 0
                ref.base_weight.reshape(-1)[gone] = 0
    x = torch.randn(3, 3, 6, 6) * 3                      # many inputs outside the grid
    with torch.no_grad():
        torch.testing.assert_close(pruned(x).double(), reference(x.double()), rtol=1e-5,
                                   atol=1e-5)


def test_storage_is_the_kept_vectors_and_one_bit_per_edge():
    net = prune_edges(dense([784, 64, 10], KANSpec(5, 3)), 0.9)
    s = storage(net)
    kept = kept_count(784 * 64, 0.9) + kept_count(64 * 10, 0.9)
    assert s["itemized"] == {"coefficients": kept * 8 * 4, "base_weights": kept * 4,
                             "indices": 784 * 64 // 8 + 640 // 8, "other": 0}
    assert s["dense_kan_bytes"] == (784 * 64 + 640) * 10 * 4


def test_a_fine_tune_moves_only_the_kept_edges():
    net = prune_edges(dense([6, 4, 2], KANSpec(5, 3)), 0.5)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(16, 6)).square().mean().backward()
        opt.step()
    for layer in kan_layers(net).values():
        edges = math.prod(layer.edge_shape)
        gone = ~unpack_indices(layer.mask, edges, 2).bool()
        assert (layer.edge_weights().reshape(edges, -1)[gone] == 0).all()


@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
def test_the_file_holds_the_itemized_bytes_and_loads_into_the_skeleton(conv, tmp_path):
    factory = DenseKANFactory(KANSpec(5, 3))
    make = (lambda: ConvKAN([4, 6], [1, 2], 3, 5, factory)) if conv else \
        (lambda: KAN([12, 8, 3], factory))
    torch.manual_seed(0)
    net = prune_edges(make(), 0.7)
    path = tmp_path / "pruned.safetensors"
    save_compressed(net, path, method="prune")
    assert safetensors_payload_bytes(path) == storage(net)["total_bytes"]
    loaded = load_compressed(path, prune_skeleton(make(), 0.7))
    x = torch.randn(2, 3, 8, 8) if conv else torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_a_mask_that_does_not_match_its_kept_edges_is_refused():
    net = prune_edges(dense([12, 8, 3], KANSpec(5, 3)), 0.5)
    layer = kan_layers(net)["0"]
    layer.mask.copy_(pack_mask(torch.ones(96, dtype=torch.bool)))        # keeps all 96
    with pytest.raises(ValueError, match="keeps 96 edges but 48 are stored"):
        net(torch.randn(2, 12))
    with pytest.raises(ValueError, match="past its last edge"):
        kept_positions(torch.tensor([0, 0b100], dtype=torch.uint8), 10, 1)


def test_sparsity_is_range_checked_in_one_line():
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(KanbenchError, match="method.sparsity: .* out of range"):
            resolve("g", "digits", "prune", 0, {"method": {"sparsity": bad}})


@pytest.mark.parametrize("damage", ["one more kept edge", "a bit past the last edge"])
def test_a_file_whose_mask_does_not_fit_its_kept_edges_is_refused_in_one_line(damage,
                                                                             tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    net = prune_edges(dense([7, 5, 3], KANSpec(5, 3)), 0.5)           # 15 edges in layer 1
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    save_compressed(net, good, method="prune")
    tensors = load_file(good)
    with safe_open(str(good), framework="pt") as f:
        metadata = f.metadata()
    mask = tensors["1.mask"].clone()                                    # (2,) uint8
    if damage == "one more kept edge":
        kept = unpack_indices(mask, 15, 2).bool()
        kept[int((~kept).nonzero()[0, 0])] = True
        mask = pack_mask(kept)
    else:
        mask[-1] |= 0x80                                                # bit 15: no edge
    tensors["1.mask"] = mask
    save_file(tensors, bad, metadata=metadata)
    skeleton = prune_skeleton(dense([7, 5, 3], KANSpec(5, 3)), 0.5)
    before = {k: v.clone() for k, v in skeleton.state_dict().items()}
    with pytest.raises(KanbenchError) as err:
        load_compressed(bad, skeleton)
    assert "layer 1:" in str(err.value) and "\n" not in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in skeleton.state_dict().items())
