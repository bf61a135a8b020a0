"""The results store: one JSON record per run under <root>/runs/<grid>/<run_id>.json.

Records are written once, complete, by an atomic rename, so a killed grid leaves either the
whole record or nothing. `to_frame()` flattens records into a pandas DataFrame.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from suite.errors import KanbenchError


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise KanbenchError(f"{path}: not valid JSON ({err})") from None


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive `flock` on `path` for the block: the kernel drops it if its holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class ResultsStore:
    def __init__(self, root: str | Path):
        self.runs = Path(root) / "runs"

    def path(self, grid: str, run_id: str) -> Path:
        return self.runs / grid / f"{run_id}.json"

    def get(self, grid: str, run_id: str) -> dict | None:
        path = self.path(grid, run_id)
        return read_json(path) if path.exists() else None

    def write(self, record: dict) -> Path:
        path = self.path(record["grid"], record["run_id"])
        write_json_atomic(path, record)
        return path

    def records(self, grid: str | None = None) -> list[dict]:
        pattern = f"{grid}/*.json" if grid else "*/*.json"
        return [read_json(p) for p in sorted(self.runs.glob(pattern))]

    def to_frame(self, grid: str | None = None) -> pd.DataFrame:
        """One row per record; nested fields become dotted columns (metrics.accuracy...)."""
        return pd.json_normalize(self.records(grid), sep=".")
