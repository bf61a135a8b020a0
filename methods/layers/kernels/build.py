"""The suite's C++ kernels (gather.cpp, spline.cpp beside this file), compiled by
torch.utils.cpp_extension once per source version on a machine: at `make install`, or at the
first use after the source changed, with one line on stderr saying so.

Each build goes to .cache/kanbench/kernels/<name>-<hash> in the checkout (or under
$KANBENCH_KERNEL_CACHE), the hash covering the source, the flags, the compiler named by $CXX,
torch and Python, so a second checkout or another torch builds beside the first instead of
over it. Flags are portable (-O3, no -march=native): a build made on one node runs on every
node that shares the checkout.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

CFLAGS, LDFLAGS = ("-O3", "-fopenmp"), ("-fopenmp",)
KERNEL_CACHE = Path(__file__).resolve().parents[3] / ".cache" / "kanbench" / "kernels"
SOURCES = {"gather": Path(__file__).with_name("gather.cpp"),
           "spline": Path(__file__).with_name("spline.cpp")}

log = logging.getLogger(__name__)


def build_directory(name: str) -> tuple[Path, str]:
    """Where this version of kernel `name` is built, and its module name."""
    import torch.version

    identity = repr((CFLAGS, LDFLAGS, os.environ.get("CXX", "c++"), torch.version.__version__,
                     sys.version)).encode()
    key = hashlib.sha256(SOURCES[name].read_bytes() + identity).hexdigest()[:16]
    root = Path(os.environ.get("KANBENCH_KERNEL_CACHE") or KERNEL_CACHE)
    return root / f"{name}-{key}", f"kanbench_{name}_{key}"


def say(line: str) -> None:
    """One whole line on stderr (kernels build side by side, in threads)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@functools.cache
def load(name: str):
    """The compiled extension `name`, or None where it cannot be built (no compiler)."""
    from torch.utils import cpp_extension
    try:
        import ninja  # the pip package's binary, in case the system has none on PATH
        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
    except ImportError:
        pass
    directory, module = build_directory(name)
    building = not (directory / f"{module}.so").exists()
    if building:
        say(f"kanbench: compiling the {name} kernel into {directory} (once per source "
            "version, about a minute)")
    start = time.perf_counter()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        extension = cpp_extension.load(name=module, sources=[str(SOURCES[name])],
                                       build_directory=str(directory),
                                       extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS))
    except (OSError, RuntimeError, ImportError, SystemExit) as err:
        log.warning("%s kernel not built (%s); its PyTorch path stands in", name,
                    str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None
    if building:
        say(f"kanbench: {name} kernel built in {time.perf_counter() - start:.0f} s")
    return extension


def load_all() -> None:
    """Build every kernel now, side by side (make install, the test session's start)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(SOURCES)) as pool:
        list(pool.map(load, SOURCES))
