"""The results store: one JSON record per run under <root>/runs/<grid>/<run_id>.json.

Records are written once, complete, by an atomic rename, so a killed grid leaves either the
whole record or nothing. A file is a usable record only if it is a JSON object whose
`run_id` is its file name and whose `grid` is its folder (`record_problem`): `get` refuses
any other file in one line, the readers (`records`, `to_frame`) skip it and list it in
`skipped`. `to_frame()` flattens records into a pandas DataFrame.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from kanbench.suite.errors import KanbenchError, regular_file

RECORD_KEYS = ("run_id", "grid", "task", "method", "seed", "status", "config")


def read_json(path: Path) -> dict:
    regular_file(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise KanbenchError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise KanbenchError(f"{path}: cannot read ({err.strerror})") from None


def record_problem(path: Path, record) -> str | None:
    """Why `record`, read from `path`, is not a usable record; None when it is."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        return f"no {missing[0]!r} field"
    if record["run_id"] != path.stem:
        return f"its run_id {record['run_id']!r} is not its file name"
    if record["grid"] != path.parent.name:
        return f"its grid {record['grid']!r} is not its folder"
    if record["status"] not in ("done", "failed"):
        return f"status {record['status']!r} is neither done nor failed"
    if record["status"] == "done":
        metrics = record.get("metrics")
        primary = metrics.get("primary") if isinstance(metrics, dict) else None
        value = metrics.get(primary) if isinstance(primary, str) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"its primary metric {primary!r} has no value"
        if not isinstance(record.get("storage"), dict):
            return "no storage"
    return None


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


def check_writable_dir(path: Path, what: str) -> None:
    """A one-line KanbenchError unless `path` is, or can be made as, a writable directory
    (probed with a temporary file in its nearest existing folder, so nothing is left)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise KanbenchError(f"{what} {path}: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise KanbenchError(f"{what} {path}: cannot write in {existing} ({err.strerror})") \
            from None


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
        self.skipped: list[tuple[Path, str]] = []   # (file, why) the readers could not use

    def path(self, grid: str, run_id: str) -> Path:
        return self.runs / grid / f"{run_id}.json"

    def get(self, grid: str, run_id: str) -> dict | None:
        """The cell's record, None if it has none; a file there that is not its record is a
        KanbenchError (the cell would otherwise be skipped, or its file overwritten)."""
        path = self.path(grid, run_id)
        if not path.exists() and not path.is_symlink():
            return None
        record = read_json(path)
        problem = record_problem(path, record)
        if problem:
            raise KanbenchError(f"{path}: not this cell's record ({problem}); move it away to "
                                "run the cell")
        return record

    def write(self, record: dict) -> Path:
        path = self.path(record["grid"], record["run_id"])
        write_json_atomic(path, record)
        return path

    def records(self, grid: str | None = None) -> list[dict]:
        """The usable records (of `grid`, or all); the others go to `skipped`."""
        pattern = f"{grid}/*.json" if grid else "*/*.json"
        out = []
        for path in sorted(self.runs.glob(pattern)):
            try:
                record = read_json(path)
                problem = record_problem(path, record)
            except KanbenchError as err:
                problem = str(err).removeprefix(f"{path}: ")
            if problem:
                self.skipped.append((path, problem))
            else:
                out.append(record)
        return out

    def report_skipped(self) -> None:
        """List the files the readers skipped on stderr, one line each."""
        for path, problem in dict(self.skipped).items():
            print(f"skipped {path}: {problem}", file=sys.stderr)

    def to_frame(self, grid: str | None = None) -> pd.DataFrame:
        """One row per record; nested fields become dotted columns (metrics.accuracy...)."""
        return pd.json_normalize(self.records(grid), sep=".")
