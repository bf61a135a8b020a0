import contextlib
import os
import subprocess
import sys
from pathlib import Path

# Triton kernels run in its interpreter on CPU tensors in these tests. Triton reads this once,
# when it is first imported (its own standard library is decorated then), so it is set here,
# before any test imports torch's compiler stack, which imports Triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from tests.datafiles import write_all

REPO = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    """Build the C++ kernels (once per source version, into the checkout's cache) before any
    test runs, so no test but the one that checks the build ever compiles them."""
    from kanbench.methods.layers.kernels import build

    build.load_all()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Tiny MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in their real on-disk formats."""
    return write_all(tmp_path_factory.mktemp("data"))


@contextlib.contextmanager
def temp_method(name: str, cls: type):
    """`cls` registered as method `name` for the length of the block (a method written in a
    test), then forgotten."""
    from kanbench.suite.registry import METHODS

    METHODS.register(name)(cls)
    try:
        yield cls
    finally:
        METHODS.unregister(name)


def run_script(script: str, *args: str, timeout: float = 900, **kwargs):
    """Run scripts/<script> in a fresh interpreter from the repo root."""
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
