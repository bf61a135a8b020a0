"""Child process of `measure.peak_memory` on CPU: reads a pickled (model, batch) from its
parent on stdin, runs one forward+backward and prints, as JSON, its resident set size
before the step and the high-water mark of the step. A fresh interpreter, so nothing of the
parent's grid inflates the peak.

A warm-up step on the batch's first two rows comes first, so one-time costs (modules that
torch imports on first use, e.g. ~160 MB behind `torch.utils.checkpoint`) are not counted as
the step's memory. On Linux the high-water mark is then reset to the current RSS just before
the step (`/proc/self/clear_refs`), so import-time peaks do not hide the step's own peak.
"""

import json
import pickle
import resource
import sys
from pathlib import Path

import torch  # noqa: F401 - unpickling needs it

STATUS = Path("/proc/self/status")


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


if __name__ == "__main__":
    model, example = pickle.loads(sys.stdin.buffer.read())
    model.train()
    model(example[:2]).float().square().mean().backward()          # warm-up, see above
    model.zero_grad(set_to_none=True)
    if STATUS.exists() and reset_peak():
        before = status_bytes("VmRSS")
        model(example).float().square().mean().backward()
        peak, method = status_bytes("VmHWM"), "VmHWM after clear_refs"
    else:  # no resettable peak: the process-lifetime high-water mark
        scale = 1 if sys.platform == "darwin" else 1024
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        model(example).float().square().mean().backward()
        peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "ru_maxrss"
    print(json.dumps({"before": before, "peak": peak, "method": method}))
