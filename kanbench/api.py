"""kanbench's Python API: bring a trained KAN, compress it with any registered method's
post-training stages, save and load the compressed file, measure and evaluate it.

    model = from_efficient_kan(state_dict)            # or from_pykan(pykan_model)
    small = compress(model, "share_int8", codebook_size=256)
    save(small, "small.safetensors"); small = load("small.safetensors")
    measure(small, input_shape=(64,)); evaluate(small, "digits")

Networks are kanbench KANs: `methods.layers.architectures.KAN` (a stack of KAN layers), or
any module whose KAN layers implement `methods.layers.kan.KANLayer` (ConvKANs, detection
heads); `save`/`load` rebuild a `KAN` from the file alone and other networks from `like`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kanbench.methods.layers import files
from kanbench.methods.layers.architectures import KAN
from kanbench.methods.layers.convert import from_efficient_kan, from_pykan
from kanbench.methods.layers.kan import DenseKANFactory, kan_layers
from kanbench.methods.layers.spec import KANSpec
from kanbench.suite import measure as measuring
from kanbench.suite.config import TRAIN_DEFAULTS, RunConfig, plugin_args, resolve
from kanbench.suite.errors import KanbenchError, regular_file
from kanbench.suite.registry import METHODS, TASKS

__all__ = ["compress", "evaluate", "from_efficient_kan", "from_pykan", "kan_bytes", "load",
           "measure", "save"]
RECIPE = "kanbench_recipe"   # the attribute `compress` leaves on its result: method and args


@dataclass(frozen=True)
class NoData:
    """The stage context of `compress` without a task: a stage that trains says so."""

    cfg: RunConfig

    def fit(self, net: nn.Module, stage: str, **train) -> nn.Module:
        raise KanbenchError(f"method {self.cfg.method!r}'s {stage} stage trains on a task's "
                            "data: pass task='<a registered task>' (and its data_root), or "
                            "turn that stage off in the method's args")


def method_args(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults updated by `given`, checked as a grid's would be."""
    return plugin_args("method", METHODS.create(method), given, f"method {method!r}")


def after_training(method: str, args: dict) -> list:
    """The method's stages after the one whose model it compresses (`before_compression`);
    none for a method that only trains."""
    m = METHODS.create(method)
    stages = m.stages(args)
    names = [s.name for s in stages]
    return stages[names.index(m.before_compression) + 1:] if m.before_compression in names else []


def post_training_stages(method: str, args: dict) -> list:
    """after_training's stages, which must exist."""
    stages = after_training(method, args)
    if not stages:
        compressing = [n for n in METHODS.names()
                       if after_training(n, dict(METHODS.create(n).defaults))]
        raise KanbenchError(f"method {method!r} has no post-training stages (it trains a "
                            f"network: run it in a grid); compressing methods: "
                            f"{', '.join(compressing)}")
    return stages


def check_kan(model: nn.Module) -> None:
    if not isinstance(model, nn.Module) or not kan_layers(model):
        raise KanbenchError("the model has no kanbench KAN layers: convert it first with "
                            "kanbench.from_efficient_kan or kanbench.from_pykan")


def compress(model: nn.Module, method: str, *, task: str | None = None,
             task_args: dict | None = None, data_root: str = "data", seed: int = 0,
             **args) -> nn.Module:
    """A compressed copy of `model`: `method`'s stages after training (SHARe's VQ and int8,
    MetaCluster's k-means and codebook fine-tune...) with `args` over its defaults. A stage
    that trains (a fine-tune) needs `task`, whose training data it uses."""
    check_kan(model)
    resolved = method_args(method, args)
    stages = post_training_stages(method, resolved)
    if task is None:
        ctx = NoData(RunConfig("api", "", method, seed, {"method": resolved}))
    else:
        ctx = task_context(task, method, task_args, data_root, seed, resolved)
    net = copy.deepcopy(model)
    for stage in stages:
        net = stage.run(ctx, net)
    net.eval()
    setattr(net, RECIPE, {"method": method, "args": resolved})
    return net


def task_context(task: str, method: str, task_args: dict | None, data_root: str, seed: int,
                 resolved: dict):
    """A stage context on `task`'s data, as a grid cell of this method would have."""
    import lightning as L

    from kanbench.suite.lit import StageContext

    cfg = resolve("api", task, method, seed, {"task": task_args or {}, "method": resolved})
    t = TASKS.create(task)
    t.check_data(cfg.args["task"], data_root)
    L.seed_everything(seed, workers=True, verbose=False)
    data = t.datamodule(cfg.args["task"], data_root, cfg.args["train"]["batch_size"], seed)
    return StageContext(cfg, t, METHODS.create(method), data)


def evaluate(model: nn.Module, task: str, *, task_args: dict | None = None,
             data_root: str = "data", seed: int = 0) -> dict[str, Any]:
    """`task`'s test metrics of `model` (validation ones under "val"); "primary" names the
    task's metric. The model must take the task's inputs (its network's input shape)."""
    ctx = task_context(task, "dense", task_args, data_root, seed, {})
    example = ctx.task.example_input(ctx.cfg.args["task"], 2)
    try:
        with torch.no_grad():
            model.eval()(example)
    except (RuntimeError, AssertionError) as err:  # a shape assert or a failed product
        raise KanbenchError(f"the model does not take {task}'s inputs {tuple(example.shape)}: "
                            f"{str(err).splitlines()[0]}") from None
    return {**ctx.evaluate(model), "primary": ctx.task.metric}


def kan_bytes(model: nn.Module) -> int:
    """Bytes the model's KAN layers need at inference (the storage accounting's kan_bytes)."""
    return measuring.storage(model)["kan_bytes"]


def measure(model: nn.Module, input_shape: tuple[int, ...], *, batches: tuple[int, ...] = (1, 64),
            memory: bool = True) -> dict[str, Any]:
    """Storage (itemized bytes, KAN and model ratios), forward latency (ms per batch size)
    and, for a model with trainable parameters, a training step's peak memory at the last
    batch size, with the steady-state training peak under the suite's default optimizer
    (AdamW): what a grid's record holds. `input_shape`: one input's, e.g. (64,)."""
    check_kan(model)

    def make_input(batch: int) -> torch.Tensor:
        return torch.randn(batch, *input_shape)

    result = {"storage": measuring.storage(model),
              "latency": measuring.latency(model, make_input, list(batches))}
    if memory and any(p.requires_grad for p in model.parameters()):
        from kanbench.suite.lit import all_parameters, optimizer

        result["memory"] = measuring.training_memory(
            model, make_input(batches[-1]), lambda m: optimizer(
                all_parameters(m, TRAIN_DEFAULTS), TRAIN_DEFAULTS["weight_decay"], None))
    return result


def architecture(model: nn.Module) -> dict | None:
    """What rebuilds a `KAN` (widths and spline settings) from its layers, or None."""
    if not isinstance(model, KAN):
        return None
    layers = list(kan_layers(model).values())
    widths = [layers[0].edge_shape[1]] + [layer.edge_shape[0] for layer in layers]
    return {"kind": "kan", "widths": widths, "kan": layers[0].spec.as_args()}


def save(model: nn.Module, path: str | Path) -> int:
    """Write the model (compressed or dense) as a safetensors file; returns its tensor bytes,
    which equal the storage accounting's total."""
    check_kan(model)
    recipe = getattr(model, RECIPE, {"method": "dense", "args": {}})
    files.save_compressed(model, path, method=recipe["method"],
                          extra={"args": recipe["args"], "architecture": architecture(model)})
    return files.safetensors_payload_bytes(path)


def load(path: str | Path, like: nn.Module | None = None, layout: str = "auto") -> nn.Module:
    """A model from a file: kanbench's own (written by `save`; `like`: the dense network it
    compressed, where it is not a plain `KAN`) or an efficient-kan state dict (.safetensors,
    or .pt read with weights_only, which runs no code from the file)."""
    path = Path(path)
    regular_file(path, "model file")
    header = files.read_header(path) if path.suffix == ".safetensors" else None
    if header is not None and layout in ("auto", "kanbench"):
        return load_kanbench(path, header, like)
    if layout == "kanbench":
        raise KanbenchError(f"{path}: no kanbench header (write it with kanbench.save)")
    return from_efficient_kan(read_state_dict(path))


def load_kanbench(path: Path, header: dict, like: nn.Module | None) -> nn.Module:
    if like is None:
        arch = header.get("architecture")
        if not isinstance(arch, dict) or arch.get("kind") != "kan":
            raise KanbenchError(f"{path}: its network is not a plain KAN; pass like=<the "
                                "dense network it was made from>")
        try:
            net = KAN(list(arch["widths"]), DenseKANFactory(KANSpec.from_args(arch["kan"])))
        except (KeyError, TypeError, ValueError) as err:
            raise KanbenchError(f"{path}: its architecture header is malformed ({err})") from None
    else:
        net = copy.deepcopy(like)
    method = header.get("method", "dense")
    if METHODS.get(method) is None:
        raise KanbenchError(f"{path}: made by method {method!r}, which is not registered")
    args = method_args(method, header.get("args") or {})
    for stage in after_training(method, args):
        net = stage.skeleton(net)
    net = files.load_compressed(path, net)
    setattr(net, RECIPE, {"method": method, "args": args})
    return net.eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or .pt/.pth file (weights_only: no code runs)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is one line
        raise KanbenchError(f"{path}: not a readable state dict ({type(err).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]   # a Lightning checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KanbenchError(f"{path}: not a state dict of tensors")
    return state
