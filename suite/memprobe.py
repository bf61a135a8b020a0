"""The CPU side of `measure.peak_memory`: one forward+backward of a pickled (model, batch) in a
process that holds nothing else, reporting its resident set size before the step and the
high-water mark of the step.

`python -m suite.memprobe` is a server, started once per measuring process: it imports torch,
runs nothing, and for each request forks a child that unpickles the model and measures.
`python -m suite.memprobe SOCKET` serves the same requests on a Unix socket, one connection
each, for every worker process of a local grid driver (`measure.share_memory_probe`), so that
each worker does not start its own; a worker killed mid-request breaks only its connection. A
child begins as a copy of a process that only imported torch (the fresh interpreter this
probe used to start per cell, about 2 s each), so nothing of the grid that asked inflates
its peak. Requests on stdin and replies on stdout are length-prefixed frames: a pickle of
(module names, pickled (model, batch)) in, JSON out. The server imports those modules before
it forks, as the child's unpickling would, so they count in the baseline as they always did.

A warm-up step on the batch's first two rows comes first, so one-time costs (modules that
torch imports on first use, e.g. ~160 MB behind `torch.utils.checkpoint`) are not counted as
the step's memory. On Linux the high-water mark is then reset to the current RSS just before
the step (`/proc/self/clear_refs`), so earlier peaks do not hide the step's own peak.
"""

import ctypes
import importlib
import json
import os
import pickle
import resource
import socket
import struct
import sys
import threading
import traceback
from pathlib import Path

STATUS = Path("/proc/self/status")
HEADER = struct.Struct("<Q")


def status_bytes(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise KeyError(field)


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the kernel (glibc's malloc_trim), so the step
    must take new pages for what it allocates rather than reuse ones already resident."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def measure(model, example) -> dict:
    model.train()
    model(example[:2]).float().square().mean().backward()          # warm-up, see above
    model.zero_grad(set_to_none=True)
    release_free_memory()
    if STATUS.exists() and reset_peak():
        before = status_bytes("VmRSS")
        model(example).float().square().mean().backward()
        return {"before": before, "peak": status_bytes("VmHWM"),
                "method": "VmHWM after clear_refs"}
    # no resettable peak: the process-lifetime high-water mark
    scale = 1 if sys.platform == "darwin" else 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    model(example).float().square().mean().backward()
    return {"before": before, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            "method": "ru_maxrss"}


def read_frame(stream) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None                                   # the asking process closed the pipe
    (size,) = HEADER.unpack(head)
    payload = stream.read(size)
    return payload if len(payload) == size else None   # cut short: the asker died


def write_frame(stream, payload: bytes) -> None:
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def probe_in_child(request: bytes) -> bytes:
    """Import the modules the model's classes live in (as unpickling it would), then fork; the
    child unpickles and measures, sends its JSON through a pipe and exits at once."""
    modules, request = pickle.loads(request)
    for name in modules:
        importlib.import_module(name)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            reply = json.dumps(measure(*pickle.loads(request)))
        except BaseException as err:  # noqa: BLE001 - any failure goes back as what it was
            reply = json.dumps({"error": traceback.format_exception_only(err)[-1].strip()})
        os.write(write_end, reply.encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return json.dumps({"error": f"probe child ended with status {status}"}).encode()
    return b"".join(chunks)


def serve() -> None:
    """Requests on stdin, replies on stdout, until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (request := read_frame(stdin)) is not None:
        write_frame(stdout, probe_in_child(request))


def listen(path: str) -> socket.socket:
    """A Unix socket listening at `path`, removed with its folder (the server's own, made by
    `measure.MemoryProbe.share`) when the process that started this server ends: its end of
    our stdin closes, and this process exits then, whatever it is doing."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)

    def exit_with_parent():
        sys.stdin.buffer.read()
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
        os._exit(0)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()
    return listener


def serve_socket(listener: socket.socket, read_timeout_s: float = 60.0) -> None:
    """Requests on the socket, one per connection, one connection at a time."""
    while True:
        conn, _ = listener.accept()
        conn.settimeout(read_timeout_s)
        try:
            with conn, conn.makefile("rwb") as stream:
                if (request := read_frame(stream)) is not None:
                    write_frame(stream, probe_in_child(request))
        except Exception:  # noqa: BLE001 - an asker that died, hung or sent garbage loses only
            pass           # its own request


if __name__ == "__main__":
    # bound before torch loads (seconds), so workers asking early wait for an answer
    listener = listen(sys.argv[1]) if len(sys.argv) > 1 else None
    import torch  # noqa: F401 - unpickling needs it
    import torch._dynamo  # noqa: F401 - what torch.utils.checkpoint imports at its first call
    #                       (MetaKAN's edge generation): once here rather than in every child
    if listener is not None:
        serve_socket(listener)
    else:
        serve()
