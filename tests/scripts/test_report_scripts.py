"""The report scripts regenerate the committed tables byte for byte from the committed
records, and bad arguments are one line."""

import pytest

from suite.report.render import source_line, write_seed_variance, write_tables
from suite.store import ResultsStore
from tests.conftest import REPO, run_script


@pytest.mark.parametrize("grid", ["quick", "codebook_size", "bases"])
def test_committed_tables_regenerate_byte_identical(grid, tmp_path):
    frame = ResultsStore(REPO / "results").to_frame(grid)
    written = write_tables(frame, grid, tmp_path, ["md", "csv"], None, source_line(
        f"python scripts/render_tables.py --grid {grid}", frame, "results", grid))
    written += write_seed_variance(frame, grid, tmp_path, source_line(
        f"python scripts/seed_variance.py --grid {grid}", frame, "results", grid))
    assert written
    for path in written:
        committed = REPO / "results" / "tables" / path.name
        assert committed.read_bytes() == path.read_bytes(), path.name


def test_bad_arguments_are_one_line(tmp_path):
    done = run_script("render_tables.py", "--format", "html", "--results", str(tmp_path))
    assert done.returncode == 2 and "unknown format 'html'" in done.stderr
    for script in ("render_tables.py", "seed_variance.py", "plots.py"):
        done = run_script(script, "--grid", "nothing", "--results", str(tmp_path))
        assert done.returncode == 2, script
        assert done.stderr.strip().splitlines() == [
            f"error: no records for grid 'nothing' under {tmp_path}/runs"], done.stderr
