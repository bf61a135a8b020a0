"""Weights & Biases through Lightning's WandbLogger, with the suite's conventions:

- project `kanbench` (or --wandb-project / $WANDB_PROJECT), entity --wandb-entity /
  $WANDB_ENTITY, mode --wandb / $WANDB_MODE (auto: online with credentials, else offline),
  directory --wandb-dir / $WANDB_DIR (offline runs land in `<dir>/wandb/offline-run-*`);
- a cell's run: id = run_id, resume="allow", group = grid, a readable name unique in its grid
  (`run_names`), tags task, method, basis, K, grid (and --wandb-tags / $WANDB_TAGS), job_type
  `baseline` or `compress`, config = the resolved config, history = the fit's per-epoch loss,
  validation metric and learning rate, summary = the record's numbers and the compressed
  model file as a `model` artifact with its storage;
- one `reports` run per grid (id `reports-<grid>`, updated by every rerun): the tables and
  plots.

A W&B failure never loses a record.
"""

from __future__ import annotations

import argparse
import netrc
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kanbench.suite.config import RunConfig

if TYPE_CHECKING:
    import pandas as pd

MODES = ("auto", "off", "offline", "online")
ENV_MODES = {"online": "online", "offline": "offline", "dryrun": "offline", "run": "online",
             "disabled": "off"}  # $WANDB_MODE's values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wandb", default=None, choices=MODES,
                   help="auto = online with credentials, else offline (default $WANDB_MODE or "
                        "auto)")
    p.add_argument("--wandb-dir", default=None,
                   help="W&B's directory; runs go to DIR/wandb/ (default $WANDB_DIR or .)")
    p.add_argument("--wandb-project", default=None,
                   help="default $WANDB_PROJECT or kanbench")
    p.add_argument("--wandb-entity", default=None, help="default $WANDB_ENTITY or your own")
    p.add_argument("--wandb-tags", default=None,
                   help="comma-separated tags added to every run (default $WANDB_TAGS)")


@dataclass(frozen=True)
class Settings:
    """Where and how runs are logged: the command line's choice, else W&B's variables."""

    mode: str = "auto"
    dir: str = "."
    project: str = "kanbench"
    entity: str | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        env = os.environ
        tags = args.wandb_tags if args.wandb_tags is not None else env.get("WANDB_TAGS", "")
        return cls(mode=args.wandb or ENV_MODES.get(env.get("WANDB_MODE", ""), "auto"),
                   # absolute: W&B's service, started once per process, keeps its own cwd
                   dir=str(Path(args.wandb_dir or env.get("WANDB_DIR") or ".").resolve()),
                   project=args.wandb_project or env.get("WANDB_PROJECT") or "kanbench",
                   entity=args.wandb_entity or env.get("WANDB_ENTITY") or None,
                   tags=tuple(t.strip() for t in tags.split(",") if t.strip()))


def run_names(cells: list[RunConfig]) -> dict[str, str]:
    """run_id -> a readable name unique among `cells`: `task-method-s<seed>`, with the
    settings that vary among the cells of that task and method, e.g.
    `feynman-metacluster[equation=I.9.18,codebook_size=8]-s0`."""
    groups: dict[tuple[str, str], list[RunConfig]] = {}
    for cfg in cells:
        groups.setdefault((cfg.task, cfg.method), []).append(cfg)
    names = {}
    for (task, method), group in groups.items():
        settings = [{f"{s}.{k}": repr(v) for s, values in cfg.args.items()
                     for k, v in values.items()} for cfg in group]
        varying = [k for k in settings[0] if len({str(s.get(k)) for s in settings}) > 1]
        short = {k: k.split(".", 1)[1] for k in varying}
        if len(set(short.values())) < len(short):  # a name in two sections: keep the section
            short = {k: k for k in varying}
        for cfg, setting in zip(group, settings, strict=True):
            shown = ",".join(f"{short[k]}={_plain(setting[k])}" for k in varying)
            names[cfg.run_id] = f"{task}-{method}{f'[{shown}]' if shown else ''}-s{cfg.seed}"
    return names


def _plain(text: str) -> str:
    return text.strip("'").replace(" ", "")


def tags(cfg: RunConfig, settings: Settings) -> list[str]:
    found = [cfg.task, cfg.method, cfg.args["kan"]["basis"], f"grid:{cfg.grid}"]
    codes = cfg.args["method"].get("codebook_size")
    return found + ([f"K={codes}"] if codes is not None else []) + list(settings.tags)


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """auto -> online with credentials, else offline."""
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


def start(cfg: RunConfig, settings: Settings, name: str, baseline: bool):
    """A WandbLogger for this cell, or None when W&B is off or fails to start."""
    mode = resolve_mode(settings.mode)
    if mode == "off":
        return None
    quiet_defaults()
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    # W&B reads WANDB_SILENT only when a run starts; a warning raised while Lightning builds
    # the run's settings (its `anonymous=None`) would print first, once per worker process
    wandb.termsetup(wandb.Settings(silent=os.environ["WANDB_SILENT"] == "true"), None)

    Path(settings.dir).mkdir(parents=True, exist_ok=True)
    try:
        logger = WandbLogger(project=settings.project, entity=settings.entity, group=cfg.grid,
                             name=name, id=cfg.run_id, resume="allow", mode=mode,
                             save_dir=str(settings.dir), config=cfg.to_dict(),
                             tags=tags(cfg, settings),
                             job_type="baseline" if baseline else "compress")
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


def finish(logger, record: dict, model_file: Path | None = None) -> None:
    """Write the record's numbers into the run summary, log the model file as an artifact
    and close the run."""
    if logger is None:
        return
    import wandb

    try:
        summary = {"status": record["status"], "trainable_params": record.get("trainable_params")}
        for part in ("metrics", "storage", "memory", "latency", "timing"):
            summary.update(flat(record.get(part) or {}, f"{part}/"))
        logger.experiment.summary.update(summary)
        if record["status"] == "done" and model_file is not None and model_file.is_file():
            artifact = wandb.Artifact(f"model-{record['run_id']}", type="model",
                                      metadata=flat(record["storage"]))
            artifact.add_file(str(model_file), name="model.safetensors")
            logger.experiment.log_artifact(artifact)
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"W&B summary not written ({err})", stacklevel=2)
    finally:
        wandb.finish(exit_code=0 if record["status"] == "done" else 1)


def log_reports(grid: str, tables: dict[str, pd.DataFrame], images: list[Path],
                settings: Settings) -> None:
    """The grid's one reports run (id `reports-<grid>`, resumed and updated by every rerun):
    each table as a wandb.Table, each plot as an image; a failure only warns."""
    mode = resolve_mode(settings.mode)
    if mode == "off":
        return
    quiet_defaults()
    import wandb

    Path(settings.dir).mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(project=settings.project, entity=settings.entity, group=grid,
                         name=f"{grid}-reports", id=f"reports-{grid}", resume="allow",
                         job_type="reports", tags=[f"grid:{grid}", *settings.tags], mode=mode,
                         dir=str(settings.dir))
        run.log({f"tables/{name}": wandb.Table(dataframe=table.astype(object).where(
            table.notna(), None)) for name, table in tables.items()})
        run.log({f"plots/{path.stem}": wandb.Image(str(path)) for path in images})
        wandb.finish()
    except Exception as err:  # noqa: BLE001 - tracking must never fail a grid
        warnings.warn(f"W&B reports run not written ({err})", stacklevel=2)
