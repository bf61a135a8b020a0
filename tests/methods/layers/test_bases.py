"""The rbf and gram bases against independent float64 formulas, and layers built on them."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.polynomial import legendre

from kanbench.methods.layers.architectures import KAN, ConvKAN
from kanbench.methods.layers.bases import gram_bases, rbf_bases
from kanbench.methods.layers.kan import DenseKANFactory, KANConv2d, KANLinear, KANSpec
from kanbench.methods.layers.metakan import MetaKANFactory

X = torch.linspace(-4, 4, 97, dtype=torch.float64)                    # beyond both ranges


@pytest.mark.parametrize("centres,lo,hi", [(8, -2.0, 2.0), (1, -1.0, 1.0), (5, 0.0, 3.0)])
def test_rbf_bases_are_gaussians_on_evenly_spaced_centres(centres, lo, hi):
    spec = KANSpec(basis="rbf", rbf_centers=centres, rbf_range=(lo, hi))
    width = (hi - lo) / max(centres - 1, 1)
    c = [lo + j * width for j in range(centres)]
    expected = [[math.exp(-(((x - cj) / width) ** 2)) for cj in c] for x in X.tolist()]
    np.testing.assert_allclose(rbf_bases(X, spec).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("degree", [0, 1, 3, 6])
def test_gram_bases_are_monic_legendre_polynomials_of_tanh(degree):
    spec = KANSpec(basis="gram", gram_degree=degree)
    t = np.tanh(X.numpy())
    expected = []
    for n in range(degree + 1):
        lead = math.factorial(2 * n) / (2**n * math.factorial(n) ** 2)
        expected.append(legendre.legval(t, [0] * n + [1]) / lead)
    np.testing.assert_allclose(gram_bases(X, spec).numpy(), np.stack(expected, -1), atol=1e-12)


@pytest.mark.parametrize("basis", ["rbf", "gram"])
def test_linear_layer_is_the_plain_formula(basis):
    torch.manual_seed(0)
    spec = KANSpec(basis=basis)
    layer = KANLinear(6, 4, spec).double()
    x = torch.randn(9, 6, dtype=torch.float64) * 2
    seen = F.layer_norm(x, (6,)) if basis == "rbf" else x
    values = (rbf_bases if basis == "rbf" else gram_bases)(seen, spec)  # (9, 6, n)
    coef = layer.spline_weight * layer.spline_scaler[..., None]         # (4, 6, n)
    expected = F.silu(x) @ layer.base_weight.T + torch.einsum("bin,oin->bo", values, coef)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("basis", ["rbf", "gram"])
def test_conv_layer_normalizes_over_channels_and_matches_a_per_pixel_linear_layer(basis):
    """A 1x1 KAN convolution is the linear KAN layer applied at every pixel."""
    torch.manual_seed(0)
    spec = KANSpec(basis=basis, spline_scaler=False)
    conv = KANConv2d(5, 3, 1, spec=spec).double()
    linear = KANLinear(5, 3, spec).double()
    with torch.no_grad():
        linear.base_weight.copy_(conv.base_conv.weight[..., 0, 0])
        linear.spline_weight.copy_(conv.spline_conv.weight[..., 0, 0].reshape(3, 5, -1))
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    expected = linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv(x), expected)


@pytest.mark.parametrize("basis", ["rbf", "gram"])
@pytest.mark.parametrize("factory", [DenseKANFactory, lambda s: MetaKANFactory(s, 1, 8)],
                         ids=["dense", "metakan"])
def test_every_factory_builds_and_trains_on_every_basis(basis, factory):
    spec = KANSpec(basis=basis)
    for net, x in ((KAN([6, 5, 3], factory(spec)), torch.randn(4, 6)),
                   (ConvKAN([4], [1], 2, 3, factory(spec)), torch.randn(2, 2, 6, 6))):
        out = net(x)
        out.square().sum().backward()
        assert out.shape[-1] == 3 and torch.isfinite(out).all()
        assert all(p.grad is not None for p in net.parameters())
