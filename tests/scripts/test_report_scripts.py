"""The report scripts regenerate the committed tables byte for byte from the committed
records, and bad arguments are one line."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from kanbench.suite.report.render import (
    all_tables,
    source_line,
    validation_view,
    write_seed_variance,
    write_tables,
)
from kanbench.suite.report.site import sections
from kanbench.suite.store import ResultsStore
from tests.conftest import REPO, run_script

COMMITTED_GRIDS = sorted(p.name for p in (REPO / "results" / "runs").iterdir())


@pytest.mark.parametrize("grid", COMMITTED_GRIDS)
def test_committed_tables_regenerate_byte_identical(grid, tmp_path):
    frame = ResultsStore(REPO / "results").to_frame(grid)
    made = all_tables(frame)
    source = source_line(f"kanbench report {grid}", frame, "results", grid)
    written = write_tables(made, grid, tmp_path, ["md", "csv"], source)
    written += write_seed_variance(made, grid, tmp_path, source)
    if (REPO / "results" / "tables" / f"{grid}_val_summary.md").exists():
        val = validation_view(frame)
        written += write_tables(all_tables(val), f"{grid}_val", tmp_path, ["md", "csv"],
                                source_line(f"kanbench report {grid} --split val", frame,
                                            "results", grid))
    assert written
    for path in written:
        committed = REPO / "results" / "tables" / path.name
        assert committed.read_bytes() == path.read_bytes(), path.name


def test_the_claims_table_regenerates_byte_identical(tmp_path):
    for part in ("runs", "authors"):  # the records, and the authors' code run here
        shutil.copytree(REPO / "results" / part, tmp_path / "results" / part)
    for sizes in (REPO / "results" / "tables").glob("*_sizes.csv"):  # models built untrained
        (tmp_path / "results" / "tables").mkdir(exist_ok=True)
        shutil.copy(sizes, tmp_path / "results" / "tables" / sizes.name)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "claims_table.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("claims.md", "claims.csv"):
        assert (tmp_path / "results" / "tables" / name).read_bytes() == \
            (REPO / "results" / "tables" / name).read_bytes(), name


NO_TORCH = """import sys
from kanbench.cli import main
try:
    code = main(sys.argv[1:])
finally:
    assert "torch" not in sys.modules, "kanbench report imported torch"
sys.exit(code)
"""


SCRIPT_NO_TORCH = """import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    assert "torch" not in sys.modules, "a report script imported torch"
"""


def test_kanbench_report_remakes_the_deleted_reports_without_torch(tmp_path):
    """As a user would: a copy of results/ without tables/, plots/ and site/, `kanbench report`
    run from its parent; the tables and the site page come back byte for byte, the plots
    non-empty."""
    shutil.copytree(REPO / "results" / "runs" / "quick", tmp_path / "results" / "runs" / "quick")
    for split in ([], ["--split", "val"]):
        done = subprocess.run([sys.executable, "-c", NO_TORCH, "report", "quick", *split,
                               "--wandb", "off"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
    tables = sorted((tmp_path / "results" / "tables").iterdir())
    others = tuple(f"{g}_" for g in COMMITTED_GRIDS if g.startswith("quick_"))  # quick_tuning
    assert [p.name for p in tables] == sorted(
        p.name for p in (REPO / "results" / "tables").glob("quick_*")
        if not p.name.startswith(others) and "_rerun_comparison." not in p.name)
    for path in tables:
        assert path.read_bytes() == (REPO / "results" / "tables" / path.name).read_bytes(), \
            path.name
    plots = sorted((tmp_path / "results" / "plots").glob("quick_*.png"))
    assert [p.name for p in plots] == sorted(
        p.name for p in (REPO / "results" / "plots").glob("quick_*.png")
        if not p.name.startswith(others))
    assert all(p.stat().st_size > 10_000 for p in plots)
    assert sections(tmp_path / "results" / "site" / "index.html") == {
        "quick": sections(REPO / "results" / "site" / "index.html")["quick"]}


def test_the_report_scripts_write_what_they_are_asked_without_torch(tmp_path):
    """The scripts behind `kanbench report`'s parts, with their own options (LaTeX tables, a
    byte budget): each runs without torch and writes its files."""
    shutil.copytree(REPO / "results" / "runs" / "quick", tmp_path / "results" / "runs" / "quick")
    for script, *extra in (("render_tables.py", "--format", "tex", "--budget-bytes", "1e5"),
                           ("seed_variance.py",), ("plots.py",)):
        done = subprocess.run([sys.executable, "-c", SCRIPT_NO_TORCH,
                               str(REPO / "scripts" / script), "--grid", "quick", *extra],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    written = {p.name for p in (tmp_path / "results").rglob("quick_*")}
    assert {"quick_leaderboard.tex", "quick_seed_variance.md", "quick_ratios.png"} <= written


def test_bad_arguments_are_one_line(tmp_path):
    done = run_script("render_tables.py", "--format", "html", "--results", str(tmp_path))
    assert done.returncode == 2 and "unknown format 'html'" in done.stderr
    for script in ("render_tables.py", "seed_variance.py", "plots.py"):
        done = run_script(script, "--grid", "nothing", "--results", str(tmp_path))
        assert done.returncode == 2, script
        assert done.stderr.strip().splitlines() == [
            f"error: no records for grid 'nothing' under {tmp_path}/runs"], done.stderr


def test_compare_runs_sets_a_grid_s_records_beside_those_they_replace(tmp_path):
    """Against itself every setup is unchanged; a copy with one setup's metric moved far out
    shows that row outside the old range; a missing store is one line."""
    before = tmp_path / "before"
    shutil.copytree(REPO / "results" / "runs" / "quick", before / "runs" / "quick")
    after = tmp_path / "after"
    shutil.copytree(before, after)
    moved = 0
    for path in (after / "runs" / "quick").glob("*.json"):
        record = json.loads(path.read_text())
        if record["task"] == "digits" and record["method"] == "dense":
            record["metrics"]["accuracy"] += 0.5
            path.write_text(json.dumps(record))
            moved += 1
    assert moved == 3
    done = run_script("compare_runs.py", "--before", str(before), "--results", str(after))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(after / "tables" / "quick_rerun_comparison.csv")
    outside = table[~table["within seed range"]]
    assert list(zip(outside.setup, outside.method, strict=True)) == [("digits", "dense")]
    assert outside["change"].iloc[0] == pytest.approx(0.5)
    assert table.drop(outside.index)["change"].abs().max() == 0
    assert "compare_runs.py --grid quick --before" in \
        (after / "tables" / "quick_rerun_comparison.md").read_text()
    done = run_script("compare_runs.py", "--before", str(tmp_path / "nothing"),
                      "--results", str(after))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: no records for grid 'quick' under {tmp_path / 'nothing'}/runs"]
