"""The closed-form local bases and the custom-autograd spline term."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kanbench.methods.layers import splines
from kanbench.methods.layers.architectures import KAN
from kanbench.methods.layers.kan import DenseKANFactory, KANSpec, RecursiveKANLinear
from kanbench.methods.layers.splines import (
    dense_bases,
    local_bases,
    recursive_bases,
    spline_linear,
)
from tests.methods.layers.reference import bspline, reference_knots

SPECS = [KANSpec(G, k) for k in (1, 2, 3) for G in (3, 5, 10, 20)] + \
    [KANSpec(4, 0), KANSpec(6, 3, (-2.5, 0.5)), KANSpec(1, 1)]


def random_inputs(spec: KANSpec, n: int = 200, seed: int = 0) -> torch.Tensor:
    """Inputs inside the grid, in the extension knots and beyond them."""
    lo, hi = spec.grid_range
    span = hi - lo
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64) * 3 * span + lo - span


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_bases_match_the_float64_reference(spec):
    x = random_inputs(spec)
    knots = reference_knots(spec)
    expected = np.array([[bspline(v, knots, j, spec.spline_order) for j in range(spec.n_coef)]
                         for v in x.tolist()])
    np.testing.assert_allclose(dense_bases(x, spec).numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(recursive_bases(x, spec).numpy(), expected, rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_local_values_are_the_non_zero_bases(spec):
    x = random_inputs(spec, seed=1).reshape(20, 10)                  # any leading shape
    values, first = local_bases(x, spec)
    assert values.shape == (20, 10, spec.spline_order + 1) and first.shape == (20, 10)
    dense = dense_bases(x, spec)
    for r in range(spec.spline_order + 1):
        index = first + r
        ok = (index >= 0) & (index < spec.n_coef)
        picked = dense.gather(-1, index.clamp(0, spec.n_coef - 1).unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(values[..., r][ok], picked[ok])
        assert (values[..., r][~ok] == 0).all()
    # every non-zero basis is among the k+1
    assert torch.equal((dense != 0).sum(-1) <= spec.spline_order + 1,
                       torch.ones_like(first, dtype=torch.bool))


@pytest.fixture(params=["fused", "tensor with kernel", "tensor"])
def path(request, monkeypatch):
    """spline_linear's keyword arguments for each training path: the fused C++ pass, the
    tensor path with the C++ bases and input gradient, and the plain tensor path."""
    monkeypatch.setattr(splines, "BASES_KERNEL", request.param != "tensor")
    return {"fused": request.param == "fused"}


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_kernel_bases_and_input_gradient_match_the_float64_reference(spec):
    x = random_inputs(spec, n=210, seed=8).reshape(7, 30)           # ragged, partly outside
    x[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=x.dtype)
    kernel = splines._kernel_for(x)
    grid = splines._grid_arguments(spec)
    bases = kernel.bases(x, *grid, spec.n_coef)
    finite = x.isfinite()
    torch.testing.assert_close(bases[finite], dense_bases(x[finite], spec), rtol=1e-12,
                               atol=1e-14)
    assert bases[~finite].isnan().all()
    back = torch.randn(*x.shape, spec.n_coef, dtype=torch.float64)
    _, index, derivs = splines._local(x[finite], spec, derivatives=True)
    expected = (back[finite].gather(-1, index) * derivs).sum(-1)
    grad = kernel.input_grad(back, x, *grid)
    torch.testing.assert_close(grad[finite], expected, rtol=1e-12, atol=1e-14)
    assert grad[~finite].isnan().all()
    float_bases = kernel.bases(x.float(), *grid, spec.n_coef)
    torch.testing.assert_close(float_bases[finite], bases[finite].float())


@pytest.mark.parametrize("spec", [KANSpec(3, 1), KANSpec(5, 3), KANSpec(10, 2), KANSpec(4, 0)],
                         ids=str)
def test_spline_linear_gradcheck(spec, path):
    torch.manual_seed(0)
    x = random_inputs(spec, n=12, seed=2).reshape(4, 3).requires_grad_()
    coef = torch.randn(2, 3, spec.n_coef, dtype=torch.float64, requires_grad=True)
    scaler = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: spline_linear(a, c, spec, **path), (x, coef))
    assert torch.autograd.gradcheck(lambda a, c, s: spline_linear(a, c, spec, scaler=s, **path),
                                    (x, coef, scaler))


@pytest.mark.parametrize("scaled", [False, True], ids=["no scaler", "scaler"])
@pytest.mark.parametrize("chunk_inputs", [4, 2**18], ids=["chunks of one row", "one chunk"])
@pytest.mark.parametrize("spec", [KANSpec(5, 3), KANSpec(20, 3), KANSpec(3, 1)], ids=str)
def test_spline_linear_matches_autograd_through_the_recursion(spec, chunk_inputs, path, scaled,
                                                              monkeypatch):
    monkeypatch.setattr(splines, "CHUNK_INPUTS", chunk_inputs)
    monkeypatch.setattr(splines, "SCALER_GRAD_OUTPUTS", 2)           # ragged blocks of 5
    torch.manual_seed(0)
    x = random_inputs(spec, n=64, seed=3).reshape(16, 4).requires_grad_()
    coef = torch.randn(5, 4, spec.n_coef, dtype=torch.float64, requires_grad=True)
    scaler = torch.randn(5, 4, dtype=torch.float64, requires_grad=True) if scaled else None
    new = spline_linear(x, coef, spec, scaler=scaler, **path)
    weight = coef * scaler.unsqueeze(-1) if scaled else coef
    old = F.linear(recursive_bases(x, spec).flatten(1), weight.flatten(1))
    torch.testing.assert_close(new, old)
    weights = torch.randn_like(new)
    leaves = (x, coef, scaler) if scaled else (x, coef)
    torch.testing.assert_close(torch.autograd.grad((new * weights).sum(), leaves),
                               torch.autograd.grad((old * weights).sum(), leaves))


@pytest.mark.parametrize("frozen", ["coef", "scaler", "x"])
def test_spline_linear_with_a_scaler_gives_only_the_gradients_asked_for(frozen):
    spec = KANSpec(5, 3)
    x = random_inputs(spec, n=24, seed=4).reshape(6, 4).requires_grad_(frozen != "x")
    coef = torch.randn(3, 4, spec.n_coef, dtype=torch.float64, requires_grad=frozen != "coef")
    scaler = torch.randn(3, 4, dtype=torch.float64, requires_grad=frozen != "scaler")
    y = spline_linear(x, coef, spec, scaler=scaler, fused=False)
    leaves = [t for t, name in ((x, "x"), (coef, "coef"), (scaler, "scaler")) if name != frozen]
    got = torch.autograd.grad(y.sum(), leaves)
    want = torch.autograd.grad(F.linear(dense_bases(x, spec).flatten(1),
                                        (coef * scaler.unsqueeze(-1)).flatten(1)).sum(), leaves)
    torch.testing.assert_close(got, want)


class RecursiveFactory(DenseKANFactory):
    def linear(self, in_features, out_features):
        return RecursiveKANLinear(in_features, out_features, self.spec)


@pytest.mark.parametrize("spec", [KANSpec(5, 3), KANSpec(10, 2)], ids=str)
def test_training_gives_the_same_losses_on_both_paths(spec):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 12, generator=g) * 2.4 - 1.2, torch.randint(0, 3, (64,), generator=g)
    losses = {}
    for name, factory in (("new", DenseKANFactory(spec)), ("old", RecursiveFactory(spec))):
        torch.manual_seed(7)
        net = KAN([12, 8, 3], factory)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        losses[name] = []
        for _ in range(20):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    np.testing.assert_allclose(losses["new"], losses["old"], rtol=1e-4)
    assert losses["new"][-1] < losses["new"][0]


@pytest.mark.parametrize("spec", [KANSpec(5, 3), KANSpec(3, 1)], ids=str)
def test_non_finite_inputs_propagate_nan_like_the_recursion(spec):
    """A diverged network must surface as a nan loss (which the runner records), never as
    an index error from the slot arithmetic."""
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.3], dtype=torch.float64)
    new, old = dense_bases(x, spec), recursive_bases(x, spec)
    assert new[:3].isnan().any(-1).all() and old[:3].isnan().any(-1).all()
    torch.testing.assert_close(new[3], old[3])
    coef = torch.randn(2, 4, spec.n_coef, dtype=torch.float64)
    for kernel in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(splines, "BASES_KERNEL", kernel)
            y = spline_linear(x.reshape(1, 4), coef, spec, fused=False)  # no index error
        assert y.isnan().all()


FUSED_SHAPES = [(1, 1, 1), (7, 3, 5), (33, 17, 2)]   # (batch, in, out), ragged


@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_fused_spline_matches_the_float64_recursion(spec, shape):
    """Forward and both gradients against autograd through efficient-kan's recursion, on
    inputs inside the grid, in the extension knots and beyond them."""
    batch, n_in, n_out = shape
    torch.manual_seed(0)
    x = random_inputs(spec, n=batch * n_in, seed=5).reshape(batch, n_in).requires_grad_()
    coef = torch.randn(n_out, n_in, spec.n_coef, dtype=torch.float64, requires_grad=True)
    new = spline_linear(x, coef, spec, fused=True)
    old = F.linear(recursive_bases(x, spec).flatten(1), coef.flatten(1))
    torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(new)
    # k = 0: the recursion's indicator functions do not depend on x (zero gradient)
    torch.testing.assert_close(torch.autograd.grad((new * weights).sum(), (x, coef)),
                               torch.autograd.grad((old * weights).sum(), (x, coef),
                                                   materialize_grads=True),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", [KANSpec(3, 1), KANSpec(5, 3), KANSpec(10, 2), KANSpec(4, 0),
                                  KANSpec(3, 5, (-0.5, 2.0))], ids=str)
def test_fused_spline_gradcheck(spec):
    x = random_inputs(spec, n=15, seed=6).reshape(5, 3).requires_grad_()
    coef = torch.randn(4, 3, spec.n_coef, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: spline_linear(a, c, spec, fused=True),
                                    (x, coef))


def test_fused_spline_in_float32_is_as_close_to_float64_as_the_tensor_path():
    spec = KANSpec(5, 3)
    x = random_inputs(spec, n=64 * 40, seed=7).reshape(64, 40)
    coef = torch.randn(9, 40, spec.n_coef, dtype=torch.float64)
    exact = spline_linear(x, coef, spec)
    fused = spline_linear(x.float(), coef.float(), spec, fused=True).double()
    tensor_path = spline_linear(x.float(), coef.float(), spec).double()
    assert (fused - exact).abs().max() <= 4 * (tensor_path - exact).abs().max() + 1e-6


def test_fused_spline_non_finite_inputs_give_nan_outputs_and_gradients():
    spec = KANSpec(5, 3)
    x = torch.tensor([[float("nan"), 0.3], [0.2, float("inf")], [0.1, -0.4], [1e30, -1e30]],
                     dtype=torch.float64, requires_grad=True)
    coef = torch.randn(3, 2, spec.n_coef, dtype=torch.float64, requires_grad=True)
    y = spline_linear(x, coef, spec, fused=True)
    assert y[:2].isnan().all() and y[2:].isfinite().all()
    torch.testing.assert_close(y[2:], spline_linear(x[2:], coef, spec))
    assert (y[3] == 0).all()                      # far outside the grid: no basis reaches it
    y.sum().backward()
    assert x.grad[0, 0].isnan() and x.grad[1, 1].isnan() and x.grad[2:].isfinite().all()


def test_small_layers_take_the_fused_kernel_and_fall_back_without_a_compiler(monkeypatch):
    from kanbench.methods.layers.kernels import build

    spec = KANSpec(grid_size=5, spline_order=3)
    x, coef = torch.rand(16, 4) * 2 - 1, torch.randn(3, 4, spec.n_coef)
    assert splines.use_fused(x, coef)
    wide = torch.randn(splines.FUSED_MAX_EDGES // 4 + 1, 4, spec.n_coef)
    assert not splines.use_fused(x, wide)
    fused = splines.spline_linear(x, coef, spec)
    monkeypatch.setattr(build, "load", lambda name: None)        # no compiler here
    assert not splines.use_fused(x, coef)
    torch.testing.assert_close(splines.spline_linear(x, coef, spec), fused)


def test_an_empty_batch_gives_zero_gradients():
    spec = KANSpec(5, 3)
    x = torch.empty(0, 4, dtype=torch.float64, requires_grad=True)
    coef = torch.randn(3, 4, spec.n_coef, dtype=torch.float64, requires_grad=True)
    scaler = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = spline_linear(x, coef, spec, scaler=scaler, fused=False)
    assert y.shape == (0, 3)
    grads = torch.autograd.grad(y.sum(), (coef, scaler))
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)
