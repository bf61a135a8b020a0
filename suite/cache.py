"""The content-addressed cache: what a cell derives once and reuses (a stage's trained model,
a detection trunk and its features), under a hash of everything that determines it.

An entry is <root>/<folder>/<key>.safetensors (tensors) + <key>.json (its meta, a JSON
object, with the tensor file's sha256 added), the meta written last, so an entry counts only
when both are whole. A tensor file that does not hash to what its meta records (swapped, bit
flips), or a meta that is not one, is damage: a one-line KanbenchError, or with
`recompute_damaged` both files are deleted and the entry made again. Workers that need one
entry at once make it once (`making`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from kanbench.suite.errors import KanbenchError, first_line
from kanbench.suite.store import locked, read_json, write_json_atomic


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ContentCache:
    """Entries of one kind under root/<folder> ("stages", "detection"); `what` names them in
    errors ("stage cache")."""

    def __init__(self, root: str | Path, folder: str, what: str,
                 recompute_damaged: bool = False):
        self.root = Path(root)
        self.folder = self.root / folder
        self.what = what
        self.recompute_damaged = recompute_damaged

    def tensors_path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def making(self, key: str):
        """Held while entry `key` is looked up and, if missing, made: a second worker that
        needs it waits, then finds it."""
        return locked(self.folder / f".{key}.lock")

    def lookup(self, key: str) -> dict | None:
        """The entry's meta when it is whole and undamaged (its tensors at tensors_path)."""
        meta, tensors = self.folder / f"{key}.json", self.tensors_path(key)
        if not (meta.exists() and tensors.exists()):
            return None
        try:
            recorded = read_json(meta)
            if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
                damage = "its meta is not a cache entry's"
            elif file_sha256(tensors) != recorded["sha256"]:
                damage = "the weights do not hash to the sha256 its meta records"
            else:
                return recorded
        except (KanbenchError, OSError) as err:
            damage = first_line(err)
        if self.recompute_damaged:
            tensors.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return None
        raise KanbenchError(f"{self.where(key)}: damaged ({damage}); delete both to recompute "
                            "it, or rerun with --recompute-damaged")

    def store(self, key: str, write: Callable[[str], None], meta: dict) -> None:
        """`write(path)` writes the tensors; they are renamed into place, then the meta."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.{os.getpid()}.safetensors"
        write(str(tmp))
        sha256 = file_sha256(tmp)
        os.replace(tmp, self.tensors_path(key))
        write_json_atomic(self.folder / f"{key}.json", {**meta, "sha256": sha256})

    def where(self, key: str) -> str:
        return f"{self.what} {key}.safetensors / {key}.json in {self.folder}"
