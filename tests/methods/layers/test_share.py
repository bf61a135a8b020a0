"""SHARe-KAN: Gain-Shape-Bias decomposition, int8, the compressed file, multi-head sharing."""

import math
import struct

import pytest
import torch

from kanbench.methods.layers.architectures import KAN, ConvKAN
from kanbench.methods.layers.codebook import int8_scale, quantize_int8
from kanbench.methods.layers.files import (
    load_compressed,
    safetensors_payload_bytes,
    save_compressed,
)
from kanbench.methods.layers.kan import DenseKANFactory, KANSpec, kan_layers
from kanbench.methods.layers.share import (
    EDGE_NUMBERS,
    ShareKANLinear,
    decompose,
    quantize_heads,
    save_heads,
    share_skeleton,
    to_int8,
)
from kanbench.suite.errors import KanbenchError
from kanbench.suite.measure import storage

SPEC = KANSpec(5, 3)


def dense_net(seed=0, conv=False, widths=(12, 8, 3)):
    torch.manual_seed(seed)
    factory = DenseKANFactory(SPEC)
    net = ConvKAN([4, 6], [1, 2], 3, 5, factory) if conv else KAN(list(widths), factory)
    with torch.no_grad():  # trained-looking coefficients: well away from the init noise
        for layer in kan_layers(net).values():
            weight = layer.spline_weight if hasattr(layer, "spline_weight") else \
                layer.spline_conv.weight
            weight.normal_()
    return net


def test_decomposition_is_gain_times_unit_zero_mean_shape_plus_bias():
    coef = torch.randn(50, 8, dtype=torch.float64)
    coef[3] = 2.5                                                     # a constant edge
    gains, biases, shapes = decompose(coef)
    torch.testing.assert_close(gains[:, None] * shapes + biases[:, None], coef)
    torch.testing.assert_close(shapes.mean(-1), torch.zeros(50, dtype=torch.float64))
    norms = shapes.norm(dim=-1)
    assert norms[3] == 0 and gains[3] == 0 and biases[3] == 2.5
    torch.testing.assert_close(norms[norms > 0], torch.ones(49, dtype=torch.float64))


def reconstruction_error(codes: int) -> float:
    net = dense_net()
    with torch.no_grad():
        dense = {n: m.edge_weights() for n, m in kan_layers(net).items()}
        quantize_heads([net], codes, seed=0)
        return sum((m.edge_weights() - dense[n]).square().sum().item()
                   for n, m in kan_layers(net).items())


def test_reconstruction_error_falls_with_k_and_vanishes_once_every_edge_has_a_code():
    errors = [reconstruction_error(k) for k in (1, 4, 16, 64)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert reconstruction_error(12 * 8) < 1e-9                        # K >= edges of each layer


def test_the_codebook_holds_unit_norm_zero_mean_shapes_per_layer():
    net = quantize_heads([dense_net()], 4, seed=0)[0]
    books = [m.codebook for m in kan_layers(net).values()]
    assert len({id(b) for b in books}) == 2                           # one per layer
    for book in books:
        torch.testing.assert_close(book.codes.norm(dim=-1), torch.ones(4))
        torch.testing.assert_close(book.codes.mean(-1), torch.zeros(4), atol=1e-6, rtol=0)


def test_int8_values_are_within_half_a_scale_step():
    values = torch.randn(1000) * 3
    scale = int8_scale(values)
    q = quantize_int8(values, scale)
    assert q.dtype == torch.int8 and q.abs().max() == 127
    assert (q.float() * scale - values).abs().max() <= scale / 2 + 1e-6
    assert int8_scale(torch.zeros(3)) == 1


def test_int8_layer_dequantizes_each_tensor_within_its_scale():
    fp32 = quantize_heads([dense_net()], 16, seed=0)[0]
    reference = {n: {k: m.number(k).clone() for k in EDGE_NUMBERS} | {"codes": m.codebook.codes}
                 for n, m in kan_layers(fp32).items()}
    int8 = to_int8(fp32)
    for name, layer in kan_layers(int8).items():
        for number in EDGE_NUMBERS:
            assert getattr(layer, number).dtype == torch.int8
            err = (layer.number(number) - reference[name][number]).abs().max()
            assert err <= getattr(layer, f"{number}_scale") / 2 + 1e-6
        err = (layer.codebook.values() - reference[name]["codes"]).abs().max()
        assert err <= layer.codebook.scale / 2 + 1e-6


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_kernel_forward_equals_the_rebuilt_dense_forward(precision):
    net = quantize_heads([dense_net()], 16, seed=0)[0]
    net = to_int8(net) if precision == "int8" else net
    x = torch.randn(9, 12) * 2                                        # partly outside the grid
    with torch.no_grad():
        kernel = net(x)
    with torch.enable_grad():
        rebuilt = net(x)
    assert isinstance(net[0], ShareKANLinear)
    torch.testing.assert_close(kernel, rebuilt.detach(), rtol=1e-5, atol=1e-5)


def test_storage_itemizes_what_inference_reads():
    net = to_int8(quantize_heads([dense_net()], 16, seed=0)[0])
    s = storage(net)["itemized"]
    edges = 12 * 8 + 8 * 3
    assert s["indices"] == math.ceil(12 * 8 * 4 / 8) + math.ceil(8 * 3 * 4 / 8)
    assert s["gains"] == s["biases"] == s["base_weights"] == edges    # int8: 1 B each
    assert s["codebook"] == 2 * 16 * SPEC.n_coef                      # two layers' codebooks
    assert s["quantization_scales"] == 4 * (2 + 2 * 3)                # codebooks + 3 per layer


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
def test_share_file_round_trips_bit_exact(precision, conv, tmp_path):
    net = quantize_heads([dense_net(conv=conv)], 16, seed=0)[0]
    net = to_int8(net) if precision == "int8" else net
    path = tmp_path / "share.safetensors"
    save_compressed(net, path, method=f"share_{precision}")
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert path.stat().st_size == storage(net)["total_bytes"] + 8 + header_len
    assert safetensors_payload_bytes(path) == storage(net)["total_bytes"]
    skeleton = share_skeleton(dense_net(seed=1, conv=conv), 16, "fp32")
    skeleton = share_skeleton(skeleton, 16, "int8") if precision == "int8" else skeleton
    loaded = load_compressed(path, skeleton)
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    x = torch.randn(2, 3, 8, 8) if conv else torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_a_share_file_for_another_precision_is_refused(tmp_path):
    net = quantize_heads([dense_net()], 16, seed=0)[0]
    path = tmp_path / "fp32.safetensors"
    save_compressed(net, path, method="share_fp32")
    int8 = share_skeleton(share_skeleton(dense_net(), 16, "fp32"), 16, "int8")
    with pytest.raises(KanbenchError, match="expected torch.int8") as err:
        load_compressed(path, int8)
    assert "\n" not in str(err.value)


def test_multi_head_files_grow_by_only_each_heads_own_numbers(tmp_path):
    def written(heads: int) -> dict[str, int]:
        books = {}
        nets = [to_int8(h, books) for h in
                quantize_heads([dense_net(seed=s) for s in range(heads)], 16, seed=0)]
        shared = [[id(m.codebook) for m in kan_layers(n).values()] for n in nets]
        assert all(s == shared[0] for s in shared)                    # one int8 codebook
        return save_heads(nets, tmp_path / str(heads), "share_int8")

    one, four = written(1), written(4)
    edges = 12 * 8 + 8 * 3
    per_head = (math.ceil(12 * 8 * 4 / 8) + math.ceil(8 * 3 * 4 / 8)   # 4-bit indices
                + 3 * edges                                           # int8 gain, bias, base
                + 4 * 3 * 2)                                          # their scales, 2 layers
    assert one["codebooks.safetensors"] == four["codebooks.safetensors"] == \
        2 * (16 * SPEC.n_coef + 4)                                    # int8 shapes + scale
    assert [four[f"head{i}.safetensors"] for i in range(4)] == [per_head] * 4
    assert sum(four.values()) - sum(one.values()) == 3 * per_head
    # what the SHARe table's 1/10/50-head columns count from one head's record
    sizes = storage(to_int8(quantize_heads([dense_net()], 16, seed=0)[0]))
    assert sizes["shared_bytes"] == one["codebooks.safetensors"]
    assert sizes["kan_bytes"] - sizes["shared_bytes"] == per_head


@pytest.mark.parametrize("conv", [False, True], ids=["kan", "convkan"])
def test_any_kan_layer_quantizes_exactly_once_every_edge_has_a_code(conv):
    """Generated (MetaKAN) layers, linear or conv, go through SHARe like dense ones."""
    from kanbench.methods.layers.metakan import MetaKANFactory

    torch.manual_seed(0)
    factory = MetaKANFactory(SPEC, 1, 8)
    net = ConvKAN([4, 6], [1, 2], 3, 5, factory) if conv else KAN([12, 8, 3], factory)
    with torch.no_grad():
        before = {n: m.edge_weights() for n, m in kan_layers(net).items()}
        quantize_heads([net], 10_000, seed=0)                        # K >= every layer's edges
        for name, layer in kan_layers(net).items():
            assert isinstance(layer, ShareKANLinear) == (len(layer.edge_shape) == 2)
            torch.testing.assert_close(layer.edge_weights(), before[name], atol=1e-5, rtol=0)
    skeleton = share_skeleton(net, 10_000, "fp32")
    skeleton.load_state_dict(net.state_dict())
