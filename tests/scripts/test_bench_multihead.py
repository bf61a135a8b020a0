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


def test_detection_heads_are_the_tasks_kan_head_at_g10(tmp_path):
    done = run_script("bench_multihead.py", "--arch", "detection", "--head-width", "6",
                      "--classes", "2", "--heads", "1,2", "--codes", "4", "--out",
                      str(tmp_path))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "multihead_detection.csv").set_index(["method", "heads"])
    edges = 6 * 6 + 6 * 3 + 6 * 12                        # fc7, cls_score, bbox_pred
    assert frame.loc[("share_int8", 2)].dense_bytes == 2 * edges * (13 + 2) * 4  # G+k = 13
    indices = sum(math.ceil(n * 2 / 8) for n in (36, 18, 72))  # K = 4: 2 bits, per layer
    assert frame.loc[("share_int8", 1)].per_head_bytes == indices + 3 * edges + 3 * 3 * 4
    assert "fc7 6x6" in (tmp_path / "multihead_detection.md").read_text()
