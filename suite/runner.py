"""Run one cell: build the network, run the method's stages through the stage cache,
measure, and return one complete record (done or failed); the driver writes it."""

from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import load_model, save_model

from suite import measure, tracking
from suite.config import RunConfig, content_hash
from suite.errors import KanbenchError, first_line
from suite.executors import available_cores
from suite.lit import StageContext
from suite.registry import METHODS, TASKS
from suite.store import locked, read_json, write_json_atomic

STAGE_FORMAT = 3  # in every stage key: bump when what a stage's meta holds changes
#                   (2: val metrics, 3: the weights' sha256)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class StageCache:
    """Stage outputs by content hash: <root>/stages/<key>.safetensors + <key>.json (meta, with
    the weights' sha256). The meta file is written last, so a stage counts as cached only
    when both are whole; weights that do not hash to what the meta records (swapped, bit
    flips) or a meta that is not one are damage: one-line KanbenchError, or with
    `recompute_damaged` both files are deleted and the stage recomputed."""

    def __init__(self, root: str | Path, recompute_damaged: bool = False):
        self.root = Path(root) / "stages"
        self.recompute_damaged = recompute_damaged

    def load(self, key: str, net: torch.nn.Module) -> dict | None:
        meta, weights = self.root / f"{key}.json", self.root / f"{key}.safetensors"
        if not (meta.exists() and weights.exists()):
            return None
        where = f"stage cache {weights.name} / {meta.name} in {self.root}"
        try:
            recorded = read_json(meta)
            if not isinstance(recorded, dict) or not isinstance(recorded.get("metrics"), dict):
                damage = "its meta is not a stage record"
            elif file_sha256(weights) != recorded.get("sha256"):
                damage = "the weights do not hash to the sha256 its meta records"
            else:
                damage = None
        except (KanbenchError, OSError) as err:
            damage = first_line(err)
        if damage and self.recompute_damaged:
            weights.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return None
        if damage:
            raise KanbenchError(f"{where}: damaged ({damage}); delete both to recompute the "
                                "stage, or rerun with --recompute-damaged")
        try:
            load_model(net, str(weights))
        except Exception as err:  # noqa: BLE001 - whole files that do not fit this network
            raise KanbenchError(f"{where}: cannot load ({first_line(err)}); delete both to "
                                "recompute the stage") from None
        return recorded

    def computing(self, key: str):
        """Held while stage `key` is looked up and, if missing, computed: a second worker
        that needs the same stage waits, then loads it."""
        return locked(self.root / f".{key}.lock")

    def save(self, key: str, net: torch.nn.Module, meta: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.safetensors"
        save_model(net, str(tmp))
        meta = {**meta, "sha256": file_sha256(tmp)}
        os.replace(tmp, self.root / f"{key}.safetensors")
        write_json_atomic(self.root / f"{key}.json", meta)


def stage_keys(cfg: RunConfig, stages) -> list[str]:
    """Chain of content hashes: the first stage's key covers everything that determines the
    trained network (not the method's name, so methods that train alike share it)."""
    prev: object = {"task": cfg.task, "task_args": cfg.args["task"], "kan": cfg.args["kan"],
                    "train": cfg.args["train"], "seed": cfg.seed, "format": STAGE_FORMAT}
    keys = []
    for stage in stages:
        prev = content_hash({"prev": prev, "stage": stage.name, **stage.key}, length=24)
        keys.append(prev)
    return keys


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


def execute(cfg: RunConfig, logger, cache: StageCache, data_root: str) -> dict:
    """Everything a done record holds beyond its identity."""
    task, method = TASKS.create(cfg.task), METHODS.create(cfg.method)
    args = cfg.args
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = task.datamodule(args["task"], data_root, args["train"]["batch_size"], cfg.seed,
                                 cache.root.parent)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # init must not depend on the data
    factory = method.factory(args["kan"], args["method"])
    net = method.prepare(task.build(args["task"], factory), factory, args["method"], cfg.seed)
    ctx = StageContext(cfg, task, method, datamodule, logger)

    stages = method.stages(args["method"])
    stage_metrics, timing = {}, dict(getattr(datamodule, "timing", {}))
    for stage, key in zip(stages, stage_keys(cfg, stages), strict=True):
        skeleton = stage.skeleton(net)
        with cache.computing(key):  # cells running at once that share a stage run it once
            meta = cache.load(key, skeleton)
            cached = meta is not None
            if cached:
                net = skeleton
            else:
                L.seed_everything(cfg.seed, workers=True, verbose=False)
                ctx.checkpoint_dir = cache.root.parent / "checkpoints" / key
                ctx.resumed_epochs = 0
                start = time.perf_counter()
                net = stage.run(ctx, net)
                meta = {"stage": stage.name, "seconds": time.perf_counter() - start,
                        "metrics": ctx.evaluate(net), "made_by": cfg.run_id,  # the first run
                        "resumed_epochs": ctx.resumed_epochs}
                cache.save(key, net, meta)
        stage_metrics[stage.name] = meta["metrics"]
        timing[stage.name] = {"seconds": meta["seconds"], "cached": cached,
                              "resumed_epochs": meta.get("resumed_epochs", 0)}

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = net.to(device)
    model_file = cache.root.parent / "models" / f"{cfg.run_id}.safetensors"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    method.serialize(net, model_file)
    sizes = measure.storage(net, task.frozen_storage(args["task"]))
    sizes["file_bytes"] = measure.safetensors_payload_bytes(model_file)
    if sizes["file_bytes"] != sizes["total_bytes"]:
        raise AssertionError(f"model file holds {sizes['file_bytes']} B but the itemized "
                             f"storage sums to {sizes['total_bytes']} B")

    def make_input(batch):
        return task.example_input(args["task"], batch)

    # retention: each metric of the final model over the first stage's (the uncompressed model
    # a multi-stage method compressed: dense for SHARe, MetaKAN for MetaCluster)
    final, first = stage_metrics[stages[-1].name], stage_metrics[stages[0].name]
    if not math.isfinite(final.get(task.metric, math.nan)):
        raise FloatingPointError(f"the final {task.metric} is {final.get(task.metric)}")
    retention = {k: v / first[k] for k, v in final.items()
                 if len(stages) > 1 and k != "val" and first.get(k)}
    result = {"metrics": {**final, "stages": stage_metrics, "primary": task.metric,
                          "higher_is_better": task.higher_is_better,
                          **({"retention": retention} if retention else {})},
              "storage": sizes, "timing": timing,
              "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad)}
    if args["measure"]["memory"] and result["trainable_params"]:  # a training step's memory
        example = make_input(args["train"]["batch_size"]).to(device)
        result["memory"] = measure.peak_memory(net, example)
    if args["measure"]["latency"]:
        result["latency"] = measure.latency(net, make_input, args["measure"]["latency_batches"])
    return result


def new_record(cfg: RunConfig, data_root: str) -> dict:
    return {"run_id": cfg.run_id, "grid": cfg.grid, "task": cfg.task, "method": cfg.method,
            "seed": cfg.seed, "status": "running", "error": None, "config": cfg.to_dict(),
            "started_at": now(), "env": environment(data_root)}


def failed_record(cfg: RunConfig, data_root: str, error: str) -> dict:
    """The record of a cell whose worker died without one (killed, out of memory)."""
    record = new_record(cfg, data_root)
    record.update(status="failed", error=error, finished_at=now(), timing={"total_seconds": 0.0})
    return record


def run_cell(cfg: RunConfig, *, cache_dir: str | Path, data_root: str,
             wandb_mode: str = "auto", wandb_dir: str | Path = "wandb",
             recompute_damaged: bool = False, threads: int | None = None) -> dict:
    """Run one cell to its record. Exceptions (a NaN, running out of GPU memory) make a failed
    record; bad input found on the way (a malformed data file) makes a `refused` one, which the
    driver never stores; an interrupt (Ctrl-C) propagates, so a rerun starts the cell again.
    `threads`: the cell's share of the cores (None: all of them, torch's default)."""
    if threads is not None:
        use_threads(threads)
    record = new_record(cfg, data_root)
    start = time.perf_counter()
    logger = None
    try:
        logger = tracking.start(cfg, wandb_mode, wandb_dir)
        record.update(execute(cfg, logger, StageCache(cache_dir, recompute_damaged), data_root))
        record["status"] = "done"
    except KanbenchError as err:  # bad input (a malformed data file): the driver stops on it
        record.update(status="refused", error=str(err))
    except Exception as err:  # noqa: BLE001 - a failing cell is recorded and the grid goes on
        record.update(status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc())
    finally:
        record["finished_at"] = now()
        record.setdefault("timing", {})["total_seconds"] = time.perf_counter() - start
        tracking.finish(logger, record)
    return record


@dataclass(frozen=True)
class CellWork:
    """What every worker needs to run a cell: picklable, so executors can ship it."""

    cache_dir: str
    data_root: str
    wandb_mode: str = "auto"
    wandb_dir: str = "wandb"
    recompute_damaged: bool = False
    threads: int | None = None   # per cell: suite.executors.threads_per_cell

    def __call__(self, cfg: RunConfig) -> dict:
        return run_cell(cfg, cache_dir=self.cache_dir, data_root=self.data_root,
                        wandb_mode=self.wandb_mode, wandb_dir=self.wandb_dir,
                        recompute_damaged=self.recompute_damaged, threads=self.threads)

    def failed(self, cfg: RunConfig, error: str) -> dict:
        return failed_record(cfg, self.data_root, error)
