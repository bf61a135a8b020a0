"""scripts/bench_index_coding.py: a quick run end to end."""

import numpy as np
import pandas as pd

from scripts import bench_index_coding as bench
from tests.conftest import run_script


def test_quick_run_writes_both_codings_and_names_its_command(tmp_path):
    done = run_script("bench_index_coding.py", "--quick", "--rounds", "2", "--out",
                      str(tmp_path))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "index_coding.csv")
    assert list(frame.columns) == bench.COLUMNS
    assert list(frame.coding) == list(bench.CODINGS) * len(bench.QUICK_NETWORKS)
    edges = 12 * 8 + 8 * 3
    assert (frame.edges == edges).all() and (frame.K == 5).all()
    packed, ans = frame.iloc[0], frame.iloc[1]
    assert packed.index_bytes == np.ceil(96 * 3 / 8) + np.ceil(24 * 3 / 8)
    assert packed.table_bytes == 0 and ans.table_bytes == 5 * 4 * 2
    assert ans.index_bytes >= ans.entropy_bytes and ans.index_bytes % 4 == 0
    times = frame[["encode_ms", "decode_ms", "load_ms"]].to_numpy()
    assert np.isfinite(times).all() and (times > 0).all()
    md = (tmp_path / "index_coding.md").read_text()
    assert f"python scripts/bench_index_coding.py --quick --rounds 2 --out {tmp_path}" in md
    assert "| tiny [12, 8, 3] | 5 | 45 | " in md
