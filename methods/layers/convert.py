"""Trained KANs of other libraries as kanbench KANs, exactly or not at all.

- efficient-kan (`KAN` / `KANLinear`, or their state dict): per layer `base_weight` (out, in),
  `spline_weight` (out, in, G+k), optional `spline_scaler` (out, in) and the `grid` buffer
  (in, G+2k+1). The same layout as `KANLinear`, so the weights copy over as they are.
- pykan (`KAN`, i.e. `MultKAN`): per layer `coef` (in, out, G+k), `scale_base`,
  `scale_sp` and `mask` (in, out), `grid` (in, G+2k+1). An edge computes
  mask * (scale_base * silu(x) + scale_sp * spline(x)), so base_weight = (scale_base *
  mask)^T, spline_weight = coef^T, spline_scaler = (scale_sp * mask)^T.

kanbench's layers share one uniform grid per network. A grid that `update_grid` (efficient-
kan) or `fit(update_grid=True)` (pykan) moved to the data, layers with different grids, and
pykan's symbolic functions, multiplication nodes, pruned inputs and node affines cannot be
carried exactly: each is refused in one line (KanbenchError) rather than dropped.
"""

from __future__ import annotations

import torch
from torch import nn

from kanbench.methods.layers.architectures import KAN
from kanbench.methods.layers.kan import DenseKANFactory
from kanbench.methods.layers.spec import ACTIVATIONS, KANSpec
from kanbench.suite.errors import KanbenchError

GRID_RTOL = 1e-5   # knots off their uniform place by more than this (relative to h): moved


def activation_name(module: nn.Module, where: str) -> str:
    """kanbench's name of a torch activation module (SiLU -> "silu")."""
    names = {cls: name for name, cls in ACTIVATIONS.items()}
    name = names.get(type(module).__name__)
    if name is None:
        raise KanbenchError(f"{where}: base activation {type(module).__name__} is not one of "
                            f"{', '.join(sorted(names))}")
    return name


def uniform_grid(grid: torch.Tensor, n_coef: int, where: str) -> tuple[int, int, float, float]:
    """(G, k, lo, hi) of a (in, G+2k+1) extended grid, if every row is the same uniform one."""
    grid = grid.detach().double()
    k = grid.shape[-1] - 1 - n_coef
    size = n_coef - k
    if grid.dim() != 2 or k < 0 or size < 1:
        raise KanbenchError(f"{where}: a grid of shape {tuple(grid.shape)} does not fit "
                            f"{n_coef} coefficients per edge")
    lo, hi = grid[0, k].item(), grid[0, k + size].item()
    h = (hi - lo) / size
    uniform = lo + h * torch.arange(-k, size + k + 1, dtype=torch.float64)
    if not h > 0 or (grid - uniform).abs().max().item() > GRID_RTOL * h:
        raise KanbenchError(f"{where}: its grid is not uniform (knots moved by update_grid or "
                            "per input); kanbench's layers use one uniform grid, so it cannot "
                            "be converted exactly")
    return size, k, lo, hi


def kan_from_layers(layers: list[dict[str, torch.Tensor]], grids: list[torch.Tensor],
                    base_activation: str, where: str) -> KAN:
    """A kanbench KAN from per-layer efficient-kan tensors and each layer's grid."""
    specs = set()
    for i, (layer, grid) in enumerate(zip(layers, grids, strict=True)):
        specs.add(uniform_grid(grid, layer["spline_weight"].shape[-1], f"{where} layer {i}"))
    if len(specs) > 1:
        raise KanbenchError(f"{where}: its layers have different grids {sorted(specs)}; "
                            "kanbench's layers share one")
    ((size, k, lo, hi),) = specs
    scaler = "spline_scaler" in layers[0]
    if any(("spline_scaler" in layer) != scaler for layer in layers):
        raise KanbenchError(f"{where}: some layers have a spline_scaler and some do not")
    widths = [layers[0]["base_weight"].shape[1]] + [layer["base_weight"].shape[0]
                                                     for layer in layers]
    for i, layer in enumerate(layers):
        out, inp = layer["base_weight"].shape
        if inp != widths[i] or layer["spline_weight"].shape[:2] != (out, inp):
            raise KanbenchError(f"{where} layer {i}: shapes {tuple(layer['base_weight'].shape)}"
                                f" and {tuple(layer['spline_weight'].shape)} do not chain")
    spec = KANSpec(grid_size=size, spline_order=k, grid_range=(lo, hi),
                   base_activation=base_activation, spline_scaler=scaler)
    net = KAN(widths, DenseKANFactory(spec))
    with torch.no_grad():
        for module, layer in zip(net, layers, strict=True):
            for name, value in layer.items():
                getattr(module, name).copy_(value)
    return net


def efficient_kan_layers(state: dict[str, torch.Tensor], where: str
                         ) -> tuple[list[dict], list[torch.Tensor]]:
    """efficient-kan's state dict -> its layers' tensors (in order) and grids."""
    prefixes = sorted({key[:-len("base_weight")] for key in state if key.endswith("base_weight")},
                      key=lambda p: [int(t) if t.isdigit() else t for t in p.split(".")])
    if not prefixes:
        raise KanbenchError(f"{where}: no efficient-kan layer (no *base_weight tensor)")
    layers, grids = [], []
    for prefix in prefixes:
        missing = [n for n in ("spline_weight", "grid") if prefix + n not in state]
        if missing:
            raise KanbenchError(f"{where}: layer {prefix or '(top)'} has no {missing[0]}")
        names = ["base_weight", "spline_weight"] + (
            ["spline_scaler"] if prefix + "spline_scaler" in state else [])
        layers.append({n: state[prefix + n].detach().float() for n in names})
        grids.append(state[prefix + "grid"])
    return layers, grids


def from_efficient_kan(source: nn.Module | dict[str, torch.Tensor],
                       base_activation: str | None = None) -> KAN:
    """An efficient-kan `KAN` or `KANLinear` (or its state dict) as a kanbench KAN computing
    the same function. A state dict does not name its activation: `base_activation`
    (default "silu", efficient-kan's)."""
    where = "efficient-kan model"
    if isinstance(source, nn.Module):
        found = [m.base_activation for m in source.modules()
                 if isinstance(getattr(m, "base_activation", None), nn.Module)]
        if base_activation is None and found:
            names = {activation_name(a, where) for a in found}
            if len(names) > 1:
                raise KanbenchError(f"{where}: layers with different activations {names}")
            base_activation = names.pop()
        source = source.state_dict()
    layers, grids = efficient_kan_layers(source, where)
    return kan_from_layers(layers, grids, base_activation or "silu", where)


def from_pykan(model: nn.Module) -> KAN:
    """A pykan `KAN` (MultKAN) as a kanbench KAN computing the same function."""
    where = "pykan model"
    if not hasattr(model, "act_fun") or not hasattr(model, "width"):
        raise KanbenchError(f"{where}: expected pykan's KAN (with act_fun and width), got "
                            f"{type(model).__name__}")
    if any(w[1] for w in model.width if isinstance(w, (list, tuple))):
        raise KanbenchError(f"{where}: it has multiplication nodes, which kanbench's KAN "
                            "layers do not have")
    if not torch.equal(model.input_id.long(), torch.arange(len(model.input_id))):
        raise KanbenchError(f"{where}: its inputs were pruned or reordered (input_id)")
    if getattr(model, "symbolic_enabled", False) and any(
            bool(f.mask.any()) for f in model.symbolic_fun):
        raise KanbenchError(f"{where}: some edges are fixed to symbolic functions")
    for name, identity in (("node_scale", 1.0), ("node_bias", 0.0), ("subnode_scale", 1.0),
                           ("subnode_bias", 0.0)):
        if any(bool((p != identity).any()) for p in getattr(model, name, [])):
            raise KanbenchError(f"{where}: its {name} is not {identity} (a node affine "
                                "kanbench's layers do not have)")
    activations = {activation_name(layer.base_fun, where) for layer in model.act_fun}
    if len(activations) > 1:
        raise KanbenchError(f"{where}: layers with different base functions {activations}")
    layers, grids = [], []
    for layer in model.act_fun:
        mask = layer.mask.detach()
        layers.append({"base_weight": (layer.scale_base.detach() * mask).T.float(),
                       "spline_weight": layer.coef.detach().transpose(0, 1).float(),
                       "spline_scaler": (layer.scale_sp.detach() * mask).T.float()})
        grids.append(layer.grid)
    return kan_from_layers(layers, grids, activations.pop(), where)
