"""Claims: which driver is running which cell, so drivers sharing a results directory never
run one cell twice.

A claim is `<results>/claims/<grid>/<run_id>.lock`, held with an exclusive POSIX lock
(`fcntl.flock`) for as long as the cell runs, holding its owner (host, pid) and a heartbeat
that a thread renews. The kernel drops the lock when its owner dies, however it dies (SIGKILL
included), so a claim whose owner is gone is free again at once. On file systems that do not
share locks between hosts, the heartbeat decides: a claim owned by another host is respected
until its heartbeat is `ttl` seconds old.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

HEARTBEAT_SECONDS = 10.0
TTL_SECONDS = 120.0
CLAIM_BYTES = 256


class Claims:
    """The claims one driver holds on one grid's cells."""

    def __init__(self, results: str | Path, grid: str, heartbeat: float = HEARTBEAT_SECONDS,
                 ttl: float = TTL_SECONDS):
        self.dir = Path(results) / "claims" / grid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}
        self.ttl, self.held = ttl, {}  # run_id -> open file descriptor
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.beat = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
        self.beat.start()

    def path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.lock"

    def acquire(self, run_id: str) -> bool:
        """Claim the cell; False when a live driver holds it."""
        with self.lock:
            if run_id in self.held:
                return True
            path = self.path(run_id)
            while True:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return False
                try:  # the holder may have released (unlinked) it between our open and lock
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            if self._held_elsewhere(fd):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                return False
            self._write(fd)
            self.held[run_id] = fd
            return True

    def release(self, run_id: str) -> None:
        with self.lock:
            fd = self.held.pop(run_id, None)
            if fd is not None:
                self.path(run_id).unlink(missing_ok=True)  # unlink while locked, then unlock
                os.close(fd)

    def close(self) -> None:
        """Release every claim held, and remove those that drivers killed since left."""
        self.stop.set()
        for run_id in list(self.held):
            self.release(run_id)
        for path in self.dir.glob("*.lock"):
            if self.acquire(path.stem):  # free: its owner is gone
                self.release(path.stem)

    def _held_elsewhere(self, fd: int) -> bool:
        """A live owner on another host (whose lock this host may not see)."""
        try:
            owner = json.loads(os.pread(fd, CLAIM_BYTES, 0).strip() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):  # cut short by its owner's death
            return False
        if not isinstance(owner, dict):
            return False
        return owner.get("host", self.owner["host"]) != self.owner["host"] and \
            time.time() - owner.get("heartbeat", 0) < self.ttl

    def _write(self, fd: int) -> None:
        """Owner and heartbeat, padded to one fixed size so each write replaces the last."""
        data = json.dumps({**self.owner, "heartbeat": time.time()}).encode().ljust(CLAIM_BYTES)
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, CLAIM_BYTES)

    def _beat(self, every: float) -> None:
        while not self.stop.wait(every):
            with self.lock:
                for fd in self.held.values():
                    self._write(fd)
