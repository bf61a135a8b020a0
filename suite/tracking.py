"""Weights & Biases through Lightning's WandbLogger, with the suite's conventions (below).

Project `kanbench`, group = grid, name `task-method-s{seed}`, id = run_id, resume="allow",
config = the resolved config, summary = the record's metrics. Mode `auto` is online when
credentials exist and offline otherwise. A W&B failure never loses a record.
"""

from __future__ import annotations

import netrc
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from suite.config import RunConfig

if TYPE_CHECKING:
    import pandas as pd

MODES = ("auto", "off", "offline", "online")


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "online" if has_credentials() else "offline"
    return mode


# W&B's defaults here, each overridden by the user's own environment: no console chatter, and
# no system monitor (a process per run sampling every 15 s: little use on a run of seconds,
# and it outlives a killed run by ~5 s; WANDB_X_DISABLE_STATS=false turns it back on)
QUIET = {"WANDB_SILENT": "true", "WANDB_X_DISABLE_STATS": "true"}


def quiet_defaults() -> None:
    for name, value in QUIET.items():
        os.environ.setdefault(name, value)


def start(cfg: RunConfig, mode: str, wandb_dir: str | Path):
    """A WandbLogger for this cell, or None when W&B is off or fails to start."""
    mode = resolve_mode(mode)
    if mode == "off":
        return None
    quiet_defaults()
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    # W&B reads WANDB_SILENT only when a run starts; a warning raised while Lightning builds
    # the run's settings (its `anonymous=None`) would print first, once per worker process
    wandb.termsetup(wandb.Settings(silent=os.environ["WANDB_SILENT"] == "true"), None)

    Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    try:
        logger = WandbLogger(project="kanbench", group=cfg.grid, name=cfg.label, id=cfg.run_id,
                             resume="allow", mode=mode, save_dir=str(wandb_dir),
                             config=cfg.to_dict())
        _ = logger.experiment  # start the run now: a failure shows here, not mid-training
        return logger
    except Exception as err:  # noqa: BLE001 - tracking must never take a run down
        warnings.warn(f"W&B did not start ({err}); the run goes on without it", stacklevel=2)
        return None


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}/"))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value
    return out


def finish(logger, record: dict) -> None:
    """Write the record's numbers into the run summary and close the run."""
    if logger is None:
        return
    import wandb

    try:
        summary = {"status": record["status"]}
        for part in ("metrics", "storage", "memory", "latency", "timing"):
            summary.update(flat(record.get(part) or {}, f"{part}/"))
        logger.experiment.summary.update(summary)
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"W&B summary not written ({err})", stacklevel=2)
    finally:
        wandb.finish(exit_code=0 if record["status"] == "done" else 1)


def log_reports(grid: str, tables: dict[str, pd.DataFrame], images: list[Path], mode: str,
                wandb_dir: str | Path) -> None:
    """One summary run in the grid's group (`<grid>-reports`): each table as a wandb.Table,
    each plot as an image. Offline unless credentials exist; a failure only warns."""
    mode = resolve_mode(mode)
    if mode == "off":
        return
    quiet_defaults()
    import wandb

    Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(project="kanbench", group=grid, name=f"{grid}-reports",
                         id=f"reports-{grid}-{time.strftime('%Y%m%d-%H%M%S')}",
                         job_type="reports", mode=mode, dir=str(wandb_dir))
        run.log({f"tables/{name}": wandb.Table(dataframe=table.astype(object).where(
            table.notna(), None)) for name, table in tables.items()})
        run.log({f"plots/{path.stem}": wandb.Image(str(path)) for path in images})
        wandb.finish()
    except Exception as err:  # noqa: BLE001 - tracking must never fail a grid
        warnings.warn(f"W&B reports run not written ({err})", stacklevel=2)
