"""The static HTML leaderboard, `results/site/index.html` with its images in `img/`: a section
per grid (per setup the leaderboard table, the metric-against-bytes (Pareto) plot and links
to every record; the papers' claims the grid measures; the grid-wide plots). Writing a
grid's reports replaces that grid's section and keeps the others. Built from the records
(through the tables and plots made from them) alone: plain HTML and CSS, no server, no
JavaScript. Record links point at `../runs/<grid>/`, so the site reads as is from a
checkout or any copy of `results/`."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pandas as pd

from kanbench.suite.report.declared import claims
from kanbench.suite.report.paper_claims import claims_table
from kanbench.suite.report.tables import done_records

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.source { color: #666; font-size: 0.85em; }
.records a { margin-right: 0.8em; font-size: 0.85em; }
"""
SECTION = re.compile(r"<!-- grid (\S+) -->\n(.*?)<!-- end of grid \1 -->\n", re.S)


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            f"{body}\n</body></html>\n")


def table_html(table: pd.DataFrame) -> str:
    return table.to_html(index=False, escape=True, na_rep="–", border=0,
                         float_format=lambda v: f"{v:.4g}")


def image(path: Path, site: Path, alt: str) -> str:
    """Copy a plot into the site's img/ and return its <img> tag."""
    target = site / "img" / path.name
    shutil.copyfile(path, target)
    return f'<p><img src="img/{html.escape(path.name)}" alt="{html.escape(alt)}"></p>'


def records_html(rows: pd.DataFrame, grid: str) -> str:
    links = [f'<a href="../runs/{html.escape(grid)}/{html.escape(r.run_id)}.json">'
             f"{html.escape(str(r.label))} s{r.seed}</a>"
             for r in rows.sort_values(["label", "seed"]).itertuples()]
    return f'<p class="records">Records: {" ".join(links)}</p>'


def write_site(frame: pd.DataFrame, made: dict[str, pd.DataFrame], grid: str, results: str,
               plots: list[Path], source: str) -> list[Path]:
    """Write `grid`'s section of the site from its records' frame, its tables (`made`) and
    the PNG plots already written (`plots`); returns the files written."""
    site = Path(results) / "site"
    (site / "img").mkdir(parents=True, exist_ok=True)
    pngs = {p.stem: p for p in plots if p.suffix == ".png"}
    done = done_records(frame)
    board = made.get("leaderboard", pd.DataFrame())
    parts = [f'<h1 id="grid-{html.escape(grid)}">Grid <code>{html.escape(grid)}</code></h1>',
             f'<p class="source">{html.escape(source)}</p>']
    from kanbench.suite.report.render import file_name  # render imports this module

    for setup in sorted(done["setup"].unique()) if not done.empty else []:
        parts.append(f"<h2>{html.escape(grid)}: {html.escape(setup)}</h2>")
        if not board.empty:
            parts.append(table_html(board[board["setup"] == setup].drop(columns="setup")))
        plot = pngs.get(f"{grid}_bytes_{file_name(setup)}")
        if plot is not None:
            parts.append(image(plot, site, f"{setup}: metric against KAN bytes"))
        parts.append(records_html(done[done["setup"] == setup], grid))
    measured = [c.grid == grid for _, c in claims()]
    if any(measured):
        table = claims_table({grid: frame})[measured]
        parts += ["<h2>The papers' claims measured in this grid</h2>", table_html(table)]
    for name, alt in (("ratios", "compression ratios"), ("latency", "latency"),
                      ("codebook_sweep", "metric against codebook size")):
        if f"{grid}_{name}" in pngs:
            parts += [f"<h2>All setups: {alt}</h2>", image(pngs[f"{grid}_{name}"], site, alt)]
    images = [site / "img" / p.name for p in pngs.values() if (site / "img" / p.name).exists()]
    return [write_index(site / "index.html", grid, "\n".join(parts) + "\n"), *sorted(images)]


def sections(index: Path) -> dict[str, str]:
    """The grid sections of a written index.html by grid (none when there is none)."""
    return dict(SECTION.findall(index.read_text())) if index.exists() else {}


def write_index(index: Path, grid: str, section: str) -> Path:
    """index.html with `grid`'s section replaced (or added) and every other grid's kept."""
    found = sections(index) | {grid: section}
    links = " ".join(f'<a href="#grid-{html.escape(g)}">{html.escape(g)}</a>'
                     for g in sorted(found))
    body = ["<h1>kanbench leaderboard</h1>",
            "<p>Per grid and setup: methods ranked by their mean test metric, each method's "
            "storage and compression ratio, the Pareto front of storage against the metric, and "
            "every record. Written by <code>kanbench report GRID</code> (and at the end of "
            f"<code>kanbench run</code>) from the records in <code>runs/</code>.</p>"
            f"<p>Grids: {links}</p>",
            *(f"<!-- grid {g} -->\n{found[g]}<!-- end of grid {g} -->" for g in sorted(found))]
    index.write_text(page("kanbench leaderboard", "\n".join(body)))
    return index
