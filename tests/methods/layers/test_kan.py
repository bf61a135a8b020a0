"""KAN layers against an independent float64 Cox-de Boor reference."""

import math

import numpy as np
import pytest
import torch

from kanbench.methods.layers.architectures import CONV_PRESETS, KAN, ConvKAN
from kanbench.methods.layers.inits import init_as_metakan_authors
from kanbench.methods.layers.kan import (
    DenseKANFactory,
    KANConv2d,
    KANLayer,
    KANLinear,
    KANSpec,
    kan_layers,
)
from kanbench.methods.layers.metakan import MetaKANFactory
from kanbench.methods.layers.splines import dense_bases
from kanbench.suite.errors import KanbenchError
from tests.methods.layers.reference import bspline, reference_knots


def silu(v: float) -> float:
    return v / (1 + math.exp(-v))


def reference_linear(layer: KANLinear, x: np.ndarray) -> np.ndarray:
    """y[b, o] = sum_i w_b[o,i] silu(x_bi) + scaler[o,i] sum_j c[o,i,j] B_j(x_bi)."""
    spec, knots = layer.spec, reference_knots(layer.spec)
    wb = layer.base_weight.detach().double().numpy()
    ws = layer.spline_weight.detach().double().numpy()
    sc = (layer.spline_scaler.detach().double().numpy() if layer.spline_scaler is not None
          else np.ones_like(wb))
    y = np.zeros((x.shape[0], layer.out_features))
    for b in range(x.shape[0]):
        for i in range(layer.in_features):
            bases = np.array([bspline(x[b, i], knots, j, spec.spline_order)
                              for j in range(spec.n_coef)])
            y[b] += wb[:, i] * silu(x[b, i]) + sc[:, i] * (ws[:, i, :] @ bases)
    return y


SPECS = [KANSpec(5, 3), KANSpec(3, 1), KANSpec(1, 2), KANSpec(10, 2, (-2.0, 3.0)),
         KANSpec(4, 0), KANSpec(6, 3, spline_scaler=False)]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_kan_linear_matches_reference(spec):
    torch.manual_seed(0)
    layer = KANLinear(5, 3, spec)
    with torch.no_grad():  # non-trivial coefficients everywhere
        layer.spline_weight.normal_()
    lo, hi = spec.grid_range
    span = hi - lo
    # ragged batch of 7, inputs inside, at the edges of and outside the grid
    x = torch.empty(7, 5, dtype=torch.float64).uniform_(lo - span, hi + span)
    x[0, :3] = torch.tensor([lo, hi, (lo + hi) / 2])
    got = layer.double()(x).detach().numpy()
    np.testing.assert_allclose(got, reference_linear(layer, x.numpy()), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "frozen"])
def test_inference_folds_the_scalers_once_and_follows_every_change(mode):
    """Where no gradient flows the scaled coefficients are made once; an optimizer step, a
    loaded state dict and a dtype change each give the new weights' output (float64
    reference), and training still gets gradients to both tensors."""
    torch.manual_seed(0)
    layer = KANLinear(5, 3, KANSpec(5, 3)).double()
    x = torch.empty(9, 5, dtype=torch.float64).uniform_(-2, 2)

    def forward():
        if mode == "frozen":
            layer.requires_grad_(False)
            out = layer(x)
            layer.requires_grad_(True)
            return out
        with torch.no_grad() if mode == "no_grad" else torch.inference_mode():
            return layer(x)

    def expected():
        return torch.from_numpy(reference_linear(layer, x.numpy()))

    torch.testing.assert_close(forward(), expected(), rtol=1e-10, atol=1e-12)
    folded = layer._folded[1]
    forward()
    assert layer._folded[1] is folded                        # made once, reused
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).square().sum().backward()
    assert layer.spline_scaler.grad.abs().sum() > 0 and layer.spline_weight.grad.abs().sum() > 0
    optimizer.step()
    torch.testing.assert_close(forward(), expected(), rtol=1e-10, atol=1e-12)
    # fused AdamW writes in place without bumping versions: the training forward drops the fold
    fused = torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True)
    layer(x).square().sum().backward()
    fused.step()
    torch.testing.assert_close(forward(), expected(), rtol=1e-10, atol=1e-12)
    other = KANLinear(5, 3, KANSpec(5, 3)).double()
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(forward(), expected(), rtol=1e-10, atol=1e-12)
    layer.float()
    x = x.float()
    torch.testing.assert_close(forward().double(), expected(), rtol=1e-5, atol=1e-6)
    assert "_folded" not in "".join(layer.state_dict())


def test_kan_linear_keeps_leading_dims():
    layer = KANLinear(4, 2)
    x = torch.randn(2, 3, 4)
    assert layer(x).shape == (2, 3, 2)
    torch.testing.assert_close(layer(x).reshape(6, 2), layer(x.reshape(6, 4)))


@pytest.mark.parametrize("spec", [KANSpec(5, 3), KANSpec(2, 1), KANSpec(7, 0)], ids=str)
def test_bases_partition_unity_inside_grid(spec):
    x = torch.linspace(*spec.grid_range, 101, dtype=torch.float64)[:-1]
    sums = dense_bases(x, spec).sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums))


def reference_conv(layer: KANConv2d, x: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Per output pixel, sum over (in channel, kernel position) edges of their KAN function."""
    spec, knots = layer.spec, reference_knots(layer.spec)
    out_c, in_c = layer.out_channels, layer.in_channels
    wb = layer.base_conv.weight.detach().double().numpy()                 # (out, in, kh, kw)
    kh, kw = wb.shape[2:]
    ws = layer.spline_conv.weight.detach().double().numpy().reshape(out_c, in_c, spec.n_coef,
                                                                     kh, kw)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    # silu(0) = 0 and the spline of 0 is not 0, so padding is applied to x as the conv does:
    # torch pads the *activations and bases*, i.e. padded positions contribute nothing.
    valid = np.pad(np.ones_like(x), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out = (xp.shape[2] - kh) // stride + 1
    w_out = (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], out_c, h_out, w_out))
    for b in range(x.shape[0]):
        for r in range(h_out):
            for s in range(w_out):
                for c in range(in_c):
                    for u in range(kh):
                        for v in range(kw):
                            pr, ps = r * stride + u, s * stride + v
                            if not valid[b, c, pr, ps]:
                                continue
                            xv = xp[b, c, pr, ps]
                            bases = np.array([bspline(xv, knots, j, spec.spline_order)
                                              for j in range(spec.n_coef)])
                            y[b, :, r, s] += wb[:, c, u, v] * silu(xv) + ws[:, c, :, u, v] @ bases
    return y


@pytest.mark.parametrize("stride,padding,spec", [(1, 1, KANSpec(3, 2)), (2, 0, KANSpec(2, 1)),
                                                 (2, 1, KANSpec(1, 3))], ids=str)
def test_kan_conv_matches_reference(stride, padding, spec):
    torch.manual_seed(1)
    layer = KANConv2d(2, 3, 3, stride=stride, padding=padding, spec=spec).double()
    x = torch.empty(2, 2, 5, 6, dtype=torch.float64).uniform_(-1.5, 1.5)
    got = layer(x).detach().numpy()
    np.testing.assert_allclose(got, reference_conv(layer, x.numpy(), stride, padding),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scaler", [True, False])
def test_linear_storage_is_its_parameter_bytes(scaler):
    spec = KANSpec(7, 2, spline_scaler=scaler)
    layer = KANLinear(13, 5, spec)
    parts = layer.storage()
    n_params = sum(p.numel() for p in layer.parameters())
    assert sum(parts.values()) == 4 * n_params == layer.dense_bytes()
    assert parts["coefficients"] == 13 * 5 * 9 * 4
    assert ("scalers" in parts) == scaler


def test_conv_storage_is_its_parameter_bytes():
    layer = KANConv2d(3, 4, 3, spec=KANSpec(5, 3))
    assert sum(layer.storage().values()) == 4 * sum(p.numel() for p in layer.parameters())
    assert layer.storage()["coefficients"] == 4 * 3 * 8 * 9 * 4


def test_networks_shapes_and_presets():
    factory = DenseKANFactory(KANSpec())
    assert KAN([6, 4, 2], factory)(torch.randn(3, 6)).shape == (3, 2)
    assert CONV_PRESETS["conv4"].widths == (32, 64, 128, 256)
    assert CONV_PRESETS["conv8"].widths == (16, 32, 64, 128, 256, 256, 512, 512)
    for name in CONV_PRESETS:
        net = ConvKAN.preset(name, 3, 10, factory)
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("bad", [dict(grid_size=0), dict(spline_order=-1),
                                 dict(grid_range=(1.0, -1.0)), dict(base_activation="swish")])
def test_spec_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        KANSpec(**bad)


def test_the_spec_is_the_one_source_of_the_kan_settings():
    from kanbench.suite.config import CHOICES, KAN_DEFAULTS

    spec = KANSpec(grid_size=7, grid_range=(-2.0, 3.0), basis="rbf")
    assert KANSpec.from_args(spec.as_args()) == spec
    assert KANSpec.from_args(KAN_DEFAULTS) == KANSpec()
    for name in CHOICES["kan.base_activation"]:                    # every allowed value builds
        assert isinstance(KANLinear(2, 1, KANSpec(base_activation=name)), KANLinear)
    with pytest.raises(KanbenchError, match="^kan settings: grid_range must be increasing"):
        KANSpec.from_args({**KAN_DEFAULTS, "grid_range": [1.0, -1.0]})


def test_kan_layers_are_the_outermost_modules_keeping_the_protocol():
    net = KAN([4, 3, 2], DenseKANFactory(KANSpec()))
    wrapped = torch.nn.Sequential(net, torch.nn.Linear(2, 2))
    assert list(kan_layers(wrapped)) == ["0.0", "0.1"]
    assert all(isinstance(m, KANLayer) for m in kan_layers(wrapped).values())
    assert not isinstance(torch.nn.Linear(2, 2), KANLayer)


def test_the_metakan_authors_init_draws_their_distributions():
    """Their KAN baseline's draws (image_classification/models/kan.py): base weights uniform
    in +-1/sqrt(in), coefficients N(0, 0.01/sqrt(in)/sqrt(G+k)), scalers N(1, 0.1)."""
    torch.manual_seed(0)
    net = init_as_metakan_authors(KAN([784, 32, 10], DenseKANFactory(KANSpec())))
    first = net[0]
    bound = 1 / math.sqrt(784)
    assert first.base_weight.abs().max() <= bound
    assert first.base_weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert first.spline_weight.mean().abs() < 1e-5
    assert first.spline_weight.std().item() == pytest.approx(0.01 / 28 / math.sqrt(8), rel=0.02)
    assert first.spline_scaler.mean().item() == pytest.approx(1.0, abs=0.01)
    assert first.spline_scaler.std().item() == pytest.approx(0.1, rel=0.03)
    second = net[1]                            # each layer by its own fan-in
    assert second.base_weight.abs().max() <= 1 / math.sqrt(32)
    assert second.base_weight.abs().max() > 0.9 / math.sqrt(32)


def test_the_metakan_authors_init_draws_convolutions_as_their_conv_code():
    net = init_as_metakan_authors(ConvKAN.preset("metakan_conv4_quarter", 1, 10,
                                                 DenseKANFactory(KANSpec())))
    layer = net.features[3]                            # the second KAN convolution, 8 -> 16
    for conv, fan_in in ((layer.base_conv, 8 * 9), (layer.spline_conv, 8 * 8 * 9)):
        bound = math.sqrt(3 / fan_in)                  # Kaiming-uniform, linear gain
        assert bound * 0.95 < conv.weight.abs().max() <= bound
    meta = init_as_metakan_authors(ConvKAN.preset("metakan_conv4_quarter", 1, 10,
                                                  MetaKANFactory(KANSpec(), 1, 8)))
    prompts = meta.features[3].prompts                 # (16, 8, 3, 3, 1): Xavier-uniform
    bound = math.sqrt(6 / (16 * 8 * 9 + 1))
    assert bound * 0.95 < prompts.abs().max() <= bound


def test_the_metakan_authors_init_refuses_layers_it_says_nothing_about():
    with pytest.raises(KanbenchError, match="this network has MetaKANLinear"):
        init_as_metakan_authors(KAN([4, 3], MetaKANFactory(KANSpec(), 1, 8)))
    with pytest.raises(KanbenchError, match="no KAN layer"):
        init_as_metakan_authors(torch.nn.Linear(3, 2))
