"""scripts/paper_sizes.py builds every paper-grid model on a CPU without data and remakes the
committed table byte for byte."""

import pytest

from kanbench.suite import grid
from kanbench.suite.registry import METHODS
from kanbench.suite.sizes import cell_sizes
from tests.conftest import REPO, run_script


@pytest.mark.slow
def test_paper_sizes_regenerates_the_committed_table(tmp_path):
    done = run_script("paper_sizes.py", "--results", str(tmp_path), timeout=1200)
    assert done.returncode == 0, done.stderr
    for name in ("paper_sizes.md", "paper_sizes.csv"):
        assert (tmp_path / "tables" / name).read_bytes() == \
            (REPO / "results" / "tables" / name).read_bytes(), name


def test_a_built_structure_itemizes_what_a_trained_cell_records():
    """The quick grid's digits cells: bytes from shapes alone, per method."""
    for cfg in grid.cells("quick", ["tasks=[digits]", "seeds=[0]"]):
        sizes = cell_sizes(cfg)
        assert sizes["kan_bytes"] == sum(v for k, v in sizes["itemized"].items() if k != "other")
        assert sizes["dense_kan_bytes"] == (64 * 32 + 32 * 10) * 10 * 4
        if cfg.method == "metacluster":    # 2,368 edges at 4 bits, 16 codes of 9 fp32
            assert sizes["itemized"] == {"codebook": 16 * 9 * 4, "indices": 2368 * 4 // 8,
                                         "other": 0}


def test_the_paper_grid_runs_every_method_on_every_task():
    cells = grid.cells("paper")
    tasks = {c.task for c in cells}
    for task in tasks:
        assert {c.method for c in cells if c.task == task} == set(METHODS.names())


def test_the_paper_head_is_share_kans_dense_head():
    """SHARe-KAN's 58.67 MB dense head: a 1024 x 1024 KAN layer at G=10, k=3 without spline
    scalers (13 coefficients + a base weight = 56 B an edge) under a linear predictor."""
    (cfg,) = grid.cells("paper", ["tasks=[voc]", "methods=[dense]", "seeds=[0]"])
    sizes = cell_sizes(cfg)
    assert sizes["kan_bytes"] == 1024 * 1024 * 14 * 4
    assert abs(sizes["kan_bytes"] / 58.67e6 - 1) < 0.005
    assert sizes["itemized"]["other"] == (1024 * 21 + 21 + 1024 * 84 + 84) * 4  # the predictor
