"""Read the records of an offline W&B run file (`run-<id>.wandb`) in tests.

wandb 0.31's offline runs keep their summary only in this transaction log: a 7-byte file
header (":W&B", magic, version), then LevelDB-log framed records in 32 KiB blocks, each
record a serialized `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding at the end of a block or file
            pos += left
            continue
        parts.append(data[pos + HEADER:pos + HEADER + length])
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def summary(path: Path) -> dict:
    """The run's final summary: the last value of every key in its summary records."""
    out = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                out[key] = json.loads(item.value_json)
    return out


def run_info(path: Path) -> dict:
    """The run's id, name, tags and job_type as it started."""
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            run = record.run
            return {"id": run.run_id, "name": run.display_name, "tags": list(run.tags),
                    "job_type": run.job_type, "project": run.project, "group": run.run_group}
    raise AssertionError(f"{path} holds no run record")


def history_keys(path: Path) -> set[str]:
    """Every key logged to the run's history."""
    return {item.key or "/".join(item.nested_key) for record in records(path)
            if record.WhichOneof("record_type") == "history" for item in record.history.item}


def artifacts(path: Path) -> list[dict]:
    """The artifacts the run logged: type, name, metadata and {file: bytes}."""
    return [{"type": r.artifact.type, "name": r.artifact.name,
             "metadata": json.loads(r.artifact.metadata or "{}"),
             "files": {e.path: e.size for e in r.artifact.manifest.contents}}
            for r in records(path) if r.WhichOneof("record_type") == "artifact"]
