"""scripts/bench_multihead.py: bytes read back from the files, growing by one head's own."""

import math

import pandas as pd

from tests.conftest import run_script


def test_bytes_grow_by_one_heads_numbers_and_the_codebook_is_written_once(tmp_path):
    done = run_script("bench_multihead.py", "--widths", "20,6", "--heads", "1,4", "--codes",
                      "8", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "multihead.csv").set_index(["method", "heads"])
    edges = 20 * 6
    indices = math.ceil(edges * 3 / 8)                     # K = 8: 3 bits each
    int8_head = indices + 3 * edges + 3 * 4                # int8 gain/bias/base, their scales
    fp32_head = indices + 3 * edges * 4
    for method, per_head, codebook in (("share_int8", int8_head, 8 * 8 + 4),
                                       ("share_fp32", fp32_head, 8 * 8 * 4)):
        one, four = frame.loc[(method, 1)], frame.loc[(method, 4)]
        assert one.per_head_bytes == four.per_head_bytes == per_head
        assert one.codebook_bytes == four.codebook_bytes == codebook
        assert four.total_bytes - one.total_bytes == 3 * per_head
        assert four.dense_bytes == 4 * one.dense_bytes == 4 * edges * (8 + 2) * 4
    assert "python scripts/bench_multihead.py" in (tmp_path / "multihead.md").read_text()
