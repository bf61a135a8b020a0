"""The papers' headline claims beside kanbench's measurements, from the committed records of
the grids each claim names (suite/report/paper_claims.py): results/tables/claims.{md,csv}.
A claim whose grid has no records reads "not run". Reads only the results store.

    python scripts/claims_table.py [--results results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.errors import one_line_errors


def compact_markdown(table) -> str:
    """A markdown table without column padding (its cells are sentences: padding would
    double its size), `|` in a cell escaped."""
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(table.columns), "|" + "---|" * len(table.columns),
                      *(line(row) for row in table.itertuples(index=False))])


@one_line_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    import pandas as pd

    from kanbench.suite.report.declared import claims
    from kanbench.suite.report.paper_claims import CHOICE_RULE, VERDICT_RULE, claims_table
    from kanbench.suite.report.tables import machines
    from kanbench.suite.store import ResultsStore

    store = ResultsStore(args.results)
    grids = sorted({claim.grid for _, claim in claims()})
    frames = {g: store.to_frame(g) for g in grids}
    store.report_skipped()
    frames = {g: f for g, f in frames.items() if not f.empty}
    authors = {path.stem: pd.read_csv(path)
               for path in sorted((Path(args.results) / "authors").glob("*.csv"))}
    sized = sorted({claim.grid for _, claim in claims() if claim.sizes})
    sizes = {g: pd.read_csv(path) for g in sized
             if (path := Path(args.results) / "tables" / f"{g}_sizes.csv").is_file()}
    table = claims_table(frames, authors, sizes)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    ran = "; ".join([f"`{args.results}/runs/{g}/` ({len(f)} records, {machines(f)})"
                     for g, f in frames.items()]
                    + [f"`{args.results}/tables/{g}_sizes.csv` (models built without training, "
                       "`python scripts/paper_sizes.py`)" for g in sizes]) or "no records"
    (out / "claims.md").write_text(
        "# The papers' claims and what kanbench measures\n\n"
        f"Made by `python scripts/claims_table.py` from {ran}. Test-split metrics of the "
        "last epoch (settings chosen on validation, never on test); gaps are method minus "
        "dense of the same seed, mean and 95% t interval over seeds. The relation column says "
        "how each kanbench setting departs from the paper's; a row at the paper's own setting "
        "that this machine cannot run says why.\n\n"
        + compact_markdown(table) + "\n\n" + VERDICT_RULE + "\n\n" + CHOICE_RULE + "\n")
    table.to_csv(out / "claims.csv", index=False)
    print(f"claims table written to {out}/claims.md ({len(frames)} grids with records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
