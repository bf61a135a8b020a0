"""Run one cell top to bottom: the task's data and network, the method's stages through the
content-addressed cache (each returning what it did), the final model measured, one record
(done or failed). The driver writes it."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from kanbench.methods.layers import files
from kanbench.methods.layers.inits import INITS
from kanbench.suite import measure, tracking
from kanbench.suite.cache import ContentCache
from kanbench.suite.config import RunConfig, content_hash
from kanbench.suite.errors import KanbenchError, first_line
from kanbench.suite.executors import available_cores
from kanbench.suite.interfaces import Method, Stage, Task
from kanbench.suite.lit import StageContext, last_checkpoint, optimizer
from kanbench.suite.registry import METHODS, TASKS

STAGE_FORMAT = 3  # in every stage key: bump when what a stage's meta holds changes
#                   (2: val metrics, 3: the weights' sha256)


@dataclass(frozen=True)
class StageResult:
    """What one stage did: its final model's metrics (test, with `val`), how long it took,
    whether it came from the cache and how many epochs it resumed from a checkpoint."""

    name: str
    metrics: dict
    seconds: float
    cached: bool
    resumed_epochs: int

    def timing(self) -> dict:
        return {"seconds": self.seconds, "cached": self.cached,
                "resumed_epochs": self.resumed_epochs}


def stage_keys(cfg: RunConfig, stages: list[Stage]) -> list[str]:
    """Chain of content hashes: the first stage's key covers everything that determines the
    trained network (not the method's name, so methods that train alike share it)."""
    prev: object = {"task": cfg.task, "task_args": cfg.args["task"], "kan": cfg.args["kan"],
                    "train": cfg.args["train"], "seed": cfg.seed, "format": STAGE_FORMAT}
    keys = []
    for stage in stages:
        prev = content_hash({"prev": prev, "stage": stage.name, **stage.key}, length=24)
        keys.append(prev)
    return keys


def stage_cache(cache_dir: str | Path, recompute_damaged: bool = False) -> ContentCache:
    return ContentCache(cache_dir, "stages", "stage cache", recompute_damaged)


def run_stage(stage: Stage, key: str, net: nn.Module, ctx: StageContext,
              cache: ContentCache) -> tuple[nn.Module, StageResult]:
    """The stage's model from the cache, or made (from `net`, seeded, resuming a killed fit
    from its epoch checkpoint) and cached; cells running at once that share it make it once."""
    skeleton = stage.skeleton(net)
    with cache.making(key):
        meta = cache.lookup(key)
        if meta is not None:
            try:
                load_model(skeleton, str(cache.tensors_path(key)))
            except Exception as err:  # noqa: BLE001 - whole files that do not fit this network
                raise KanbenchError(f"{cache.where(key)}: cannot load ({first_line(err)}); "
                                    "delete both to recompute the stage") from None
            return skeleton, StageResult(stage.name, meta["metrics"], meta["seconds"], True,
                                         meta.get("resumed_epochs", 0))
        L.seed_everything(ctx.cfg.seed, workers=True, verbose=False)
        checkpoint_dir = cache.root / "checkpoints" / key
        resumed = last_checkpoint(checkpoint_dir)[1]
        ctx = replace(ctx, checkpoint_dir=checkpoint_dir)
        start = time.perf_counter()
        net = stage.run(ctx, net)
        seconds = time.perf_counter() - start
        result = StageResult(stage.name, ctx.evaluate(net), seconds, False, resumed)
        cache.store(key, lambda path: save_model(net, path),
                    {"stage": stage.name, "seconds": seconds, "metrics": result.metrics,
                     "made_by": ctx.cfg.run_id, "resumed_epochs": resumed})  # the first run
    return net, result


def final_metrics(task: Task, results: list[StageResult]) -> dict:
    """The last stage's metrics, every stage's, and the retention of each metric over the
    first stage's (the uncompressed model a multi-stage method compressed: dense for SHARe,
    MetaKAN for MetaCluster)."""
    final, first = results[-1].metrics, results[0].metrics
    if not math.isfinite(final.get(task.metric, math.nan)):
        raise FloatingPointError(f"the final {task.metric} is {final.get(task.metric)}")
    retention = {k: v / first[k] for k, v in final.items()
                 if len(results) > 1 and k != "val" and first.get(k)}
    return {**final, "stages": {r.name: r.metrics for r in results}, "primary": task.metric,
            "higher_is_better": task.higher_is_better,
            **({"retention": retention} if retention else {})}


def measure_model(net: nn.Module, task: Task, method: Method, args: dict,
                  model_file: Path) -> dict:
    """The final model's storage (itemized, checked against its file), trainable parameters,
    a training step's peak memory and the forward latency, as the args ask."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = net.to(device)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    method.serialize(net, model_file)
    sizes = measure.storage(net, task.frozen_storage(args["task"]))
    sizes["file_bytes"] = files.safetensors_payload_bytes(model_file)
    if sizes["file_bytes"] != sizes["total_bytes"]:
        raise AssertionError(f"model file holds {sizes['file_bytes']} B but the itemized "
                             f"storage sums to {sizes['total_bytes']} B")

    def make_input(batch):
        return task.example_input(args["task"], batch)

    result = {"storage": sizes,
              "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad)}
    if args["measure"]["memory"] and result["trainable_params"]:  # a training step's memory
        example = make_input(args["train"]["batch_size"]).to(device)
        train = args["train"]
        result["memory"] = measure.training_memory(net, example, lambda model: optimizer(
            method.param_groups(model, train, args["method"]), train["weight_decay"],
            train["optimizer"]))
    if args["measure"]["latency"]:
        result["latency"] = measure.latency(net, make_input, args["measure"]["latency_batches"])
    return result


def use_threads(threads: int) -> None:
    """`threads` for torch's intra-op pool and every BLAS and OpenMP pool loaded in this
    process (numpy's, faiss's): a worker that shares the machine with others takes its share
    instead of all the cores, which would leave threads spinning for each other."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment(data_root: str) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": torch.__version__,
            "lightning": L.__version__, "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "cores": available_cores(), "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "git_commit": commit, "data_root": str(data_root)}


def run_method(cfg: RunConfig, logger, cache_dir: Path, data_root: str,
               recompute_damaged: bool = False
               ) -> tuple[nn.Module, list[StageResult], StageContext]:
    """The task's data and network (seeded), then every stage of the method in turn: the
    final model, what each stage did, and the context the stages ran in."""
    task, method = TASKS.create(cfg.task), METHODS.create(cfg.method)
    args = cfg.args
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = task.datamodule(args["task"], data_root, args["train"]["batch_size"], cfg.seed,
                                 cache_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # init must not depend on the data
    factory = method.factory(args["kan"], args["method"])
    net = method.prepare(task.build(args["task"], factory), factory, args["method"], cfg.seed)
    if args["train"]["init"] is not None:
        INITS[args["train"]["init"]](net)

    ctx = StageContext(cfg, task, method, datamodule, logger)
    cache = stage_cache(cache_dir, recompute_damaged)
    stages, results = method.stages(args["method"]), []
    for stage, key in zip(stages, stage_keys(cfg, stages), strict=True):
        net, result = run_stage(stage, key, net, ctx, cache)
        results.append(result)
    return net, results, ctx


def model_path(cache_dir: str | Path, cfg: RunConfig) -> Path:
    """Where a cell's compressed model file is written."""
    return Path(cache_dir) / "models" / f"{cfg.run_id}.safetensors"


def execute(cfg: RunConfig, logger, cache_dir: Path, data_root: str,
            recompute_damaged: bool = False) -> dict:
    """Everything a done record holds beyond its identity: the stages' metrics, then the
    final model's measurements."""
    net, results, ctx = run_method(cfg, logger, cache_dir, data_root, recompute_damaged)
    metrics = final_metrics(ctx.task, results)
    model_file = model_path(cache_dir, cfg)
    timing = {**getattr(ctx.datamodule, "timing", {}), **{r.name: r.timing() for r in results}}
    return {"metrics": metrics, "timing": timing,
            **measure_model(net, ctx.task, ctx.method, cfg.args, model_file)}


def new_record(cfg: RunConfig, data_root: str) -> dict:
    return {"run_id": cfg.run_id, "grid": cfg.grid, "task": cfg.task, "method": cfg.method,
            "seed": cfg.seed, "status": "running", "error": None, "config": cfg.to_dict(),
            "started_at": now(), "env": environment(data_root)}


def failed_record(cfg: RunConfig, data_root: str, error: str) -> dict:
    """The record of a cell whose worker died without one (killed, out of memory)."""
    record = new_record(cfg, data_root)
    record.update(status="failed", error=error, finished_at=now(), timing={"total_seconds": 0.0})
    return record


@dataclass(frozen=True)
class CellWork:
    """What every worker needs to run a cell (picklable, so executors can ship it); calling
    it runs one cell to its record."""

    cache_dir: str
    data_root: str
    wandb: tracking.Settings = tracking.Settings(mode="off")
    recompute_damaged: bool = False
    threads: int | None = None   # per cell: suite.executors.threads_per_cell
    names: dict[str, str] = field(default_factory=dict)  # run_id -> W&B name (run_names)

    def __call__(self, cfg: RunConfig) -> dict:
        """The cell's record. Exceptions (a NaN, running out of GPU memory) make a failed
        record; bad input found on the way (a malformed data file) makes a `refused` one, which
        the driver never stores; an interrupt (Ctrl-C) propagates, so a rerun starts the cell
        again. `threads`: the cell's share of the cores (None: all of them)."""
        if self.threads is not None:
            use_threads(self.threads)
        record = new_record(cfg, self.data_root)
        start = time.perf_counter()
        logger = None
        try:
            logger = tracking.start(cfg, self.wandb, self.names.get(cfg.run_id, cfg.label),
                                    METHODS.get(cfg.method).baseline)
            record.update(execute(cfg, logger, Path(self.cache_dir), self.data_root,
                                  self.recompute_damaged))
            record["status"] = "done"
        except KanbenchError as err:  # bad input (a malformed data file): the driver stops
            record.update(status="refused", error=str(err))
        except Exception as err:  # noqa: BLE001 - a failing cell is recorded, the grid goes on
            record.update(status="failed", error=f"{type(err).__name__}: {err}",
                          traceback=traceback.format_exc())
        finally:
            record["finished_at"] = now()
            record.setdefault("timing", {})["total_seconds"] = time.perf_counter() - start
            tracking.finish(logger, record, model_path(self.cache_dir, cfg))
        return record

    def failed(self, cfg: RunConfig, error: str) -> dict:
        return failed_record(cfg, self.data_root, error)
