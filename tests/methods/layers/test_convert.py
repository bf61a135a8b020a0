"""Converters: an efficient-kan-layout model and a pykan KAN become kanbench KANs that compute
the same function (float64, inputs inside and outside the grid), or are refused in one line
where they cannot be carried exactly (a moved grid, symbolic edges, node affines...).

kanbench's layers are fp32, so the sources are built in fp32 (their weights carry over
exactly) and compared in float64; what is left is their fp32 grids against kanbench's knots,
computed in float64: a few 1e-7 relative."""

import functools
import importlib.util

import pytest
import torch

from kanbench.methods.layers.convert import from_efficient_kan, from_pykan
from kanbench.suite.errors import KanbenchError
from tests.conftest import REPO


@functools.cache
def example():
    """examples/compress_efficient_kan.py: its efficient-kan-layout model."""
    spec = importlib.util.spec_from_file_location(
        "compress_efficient_kan", REPO / "examples" / "compress_efficient_kan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def efficient_kan(widths, grid_size=5, order=3, grid_range=(-1.0, 1.0), seed=0):
    torch.manual_seed(seed)
    model = example().EfficientKAN(widths)
    model.layers = torch.nn.ModuleList(
        example().EfficientKANLinear(a, b, grid_size, order, grid_range)
        for a, b in zip(widths[:-1], widths[1:], strict=True))
    with torch.no_grad():   # every weight random, the scalers too
        for layer in model.layers:
            layer.spline_scaler.uniform_(-1, 1)
    return model


def close(kan, model, x):
    torch.testing.assert_close(kan.double()(x), model.double()(x), rtol=1e-5, atol=1e-6)


def inputs(width, lo=-1.0, hi=1.0, seed=1):
    """Points across the grid and beyond it on both sides, with the range ends exactly."""
    torch.manual_seed(seed)
    span = hi - lo
    x = torch.rand(64, width, dtype=torch.float64) * 2 * span + lo - span / 2
    x[0], x[1] = lo, hi
    return x


@pytest.mark.parametrize("grid_size,order,grid_range", [(5, 3, (-1.0, 1.0)), (1, 1, (0.0, 2.0)),
                                                        (7, 2, (-2.0, 3.0)), (3, 0, (-1.0, 1.0))])
def test_efficient_kan_converts_to_the_same_function(grid_size, order, grid_range):
    model = efficient_kan([3, 5, 2], grid_size, order, grid_range)
    x = inputs(3, *grid_range)
    for source in (model, model.state_dict()):
        kan = from_efficient_kan(source)
        assert kan[0].spec.grid_size == grid_size and kan[0].spec.spline_order == order
        close(kan, model, x)


def test_a_state_dict_without_spline_scalers_converts():
    model = efficient_kan([2, 3])
    state = {k: v for k, v in model.state_dict().items() if "spline_scaler" not in k}
    state["layers.0.spline_weight"] = model.layers[0].spline_weight * \
        model.layers[0].spline_scaler.unsqueeze(-1)
    kan = from_efficient_kan(state)
    assert kan[0].spline_scaler is None
    close(kan, model, inputs(2))


def test_a_moved_grid_and_layers_with_different_grids_are_refused():
    model = efficient_kan([2, 3, 1])
    state = model.state_dict()
    moved = dict(state)
    moved["layers.1.grid"] = state["layers.1.grid"].clone()
    moved["layers.1.grid"][:, 4] += 0.05          # what update_grid does to a knot
    with pytest.raises(KanbenchError, match="layer 1: its grid is not uniform"):
        from_efficient_kan(moved)
    other = efficient_kan([3, 1], grid_range=(-2.0, 2.0)).state_dict()
    mixed = {**{k: v for k, v in state.items() if k.startswith("layers.0")},
             **{k.replace("layers.0", "layers.1"): v for k, v in other.items()}}
    with pytest.raises(KanbenchError, match="different grids"):
        from_efficient_kan(mixed)
    with pytest.raises(KanbenchError, match="no efficient-kan layer"):
        from_efficient_kan({"weight": torch.zeros(2, 2)})


def pykan(widths, **kwargs):
    from kan import KAN

    return KAN(width=widths, grid=5, k=3, seed=0, auto_save=False, **kwargs)


def test_pykan_converts_to_the_same_function():
    model = pykan([3, 4, 2])
    with torch.no_grad():   # every part of an edge away from its initial value
        for layer in model.act_fun:
            layer.coef.normal_()
            layer.scale_base.normal_()
            layer.scale_sp.normal_()
            layer.mask[0, 0] = 0.0
    close(from_pykan(model), model, inputs(3, seed=2))


def test_what_pykan_has_and_kanbench_does_not_is_refused():
    model = pykan([2, 2])
    model.update_grid_from_samples(torch.randn(50, 2))
    with pytest.raises(KanbenchError, match="not uniform"):
        from_pykan(model)
    model = pykan([2, 2])
    model.fix_symbolic(0, 0, 0, "sin", fit_params_bool=False, verbose=False)
    with pytest.raises(KanbenchError, match="symbolic"):
        from_pykan(model)
    model = pykan([2, 2])
    with torch.no_grad():
        model.node_bias[0][0] = 0.5
    with pytest.raises(KanbenchError, match="node_bias"):
        from_pykan(model)
    with pytest.raises(KanbenchError, match="multiplication"):
        from_pykan(pykan([2, [1, 1], 1]))
    with pytest.raises(KanbenchError, match="expected pykan's KAN"):
        from_pykan(torch.nn.Linear(2, 2))
