"""The examples run as a user runs them, from a fresh interpreter, and say what they did."""

import re
import subprocess
import sys

from tests.conftest import REPO


def test_compress_efficient_kan_example(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "compress_efficient_kan.py"),
                           "--out", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    dense, converted = map(float, re.search(
        r"test accuracy ([\d.]+); as a kanbench KAN: ([\d.]+)", out).groups())
    assert dense > 0.9 and abs(converted - dense) < 0.01
    for method in ("share_int8", "metacluster"):
        line = next(line for line in out.splitlines() if line.startswith(method))
        size, ratio, accuracy = re.search(r"holds ([\d,]+) B \(([\d.]+)x smaller\); reloaded "
                                          r"test accuracy ([\d.]+)", line).groups()
        assert (tmp_path / f"digits_{method}.safetensors").stat().st_size > int(
            size.replace(",", ""))
        assert float(ratio) > 2 and float(accuracy) > 0.5, line
