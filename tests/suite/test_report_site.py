"""The HTML leaderboard: written from records alone, and read in a real browser (Debian's
headless Chromium, which `make test` installs): its text is there and every image loads."""

import re
import shutil
import subprocess

import pytest

from kanbench.suite.report.render import all_tables, write_reports
from kanbench.suite.report.site import sections, write_index
from kanbench.suite.store import ResultsStore
from tests.conftest import REPO

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0));
  document.body.dataset.images = images.length;
  document.body.dataset.broken = broken.map(i => i.getAttribute("src")).join(" ");
});
</script>"""


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")
    if found is None:
        pytest.fail("no Chromium: `make test` installs Debian's chromium (apt, as root)")
    return found


def rendered(page, tmp_path) -> tuple[str, int, list[str]]:
    """(the page's text as the browser built it, its image count, the images that failed)."""
    copy = tmp_path / "site"
    shutil.copytree(page.parent, copy, dirs_exist_ok=True)
    probe = copy / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    done = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    broken = re.search(r'data-broken="([^"]*)"', dom).group(1).split()
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split()), images, broken


def test_the_committed_quick_site_renders_with_every_image(tmp_path):
    site = REPO / "results" / "site"
    text, images, broken = rendered(site / "index.html", tmp_path)
    frame = ResultsStore(REPO / "results").to_frame("quick")
    assert "Grid quick" in text and "kanbench leaderboard" in text
    for setup in ("digits", "fashion_mnist", "feynman[equation=I.9.18]", "highdim", "shapes_voc"):
        assert f"quick: {setup}" in text
    assert "The papers' claims measured in this grid" in text
    for method in frame["method"].unique():
        assert method in text
    assert images >= 8 and broken == []


def test_the_site_is_written_from_records_alone_and_a_missing_image_shows(tmp_path,
                                                                         monkeypatch):
    """The quick section comes back byte for byte from the quick records alone."""
    shutil.copytree(REPO / "results" / "runs" / "quick", tmp_path / "results" / "runs" / "quick")
    monkeypatch.chdir(tmp_path)
    frame = ResultsStore("results").to_frame("quick")
    write_reports(frame, all_tables(frame), "quick", "results")
    site = tmp_path / "results" / "site"
    committed = sections(REPO / "results" / "site" / "index.html")
    assert sections(site / "index.html") == {"quick": committed["quick"]}
    # the check can fail: a deleted image is reported broken by the browser
    (site / "img" / "quick_ratios.png").unlink()
    _, _, broken = rendered(site / "index.html", tmp_path / "second")
    assert broken == ["img/quick_ratios.png"]


def test_writing_a_grid_section_replaces_it_and_keeps_the_other_grids(tmp_path):
    index = tmp_path / "index.html"
    write_index(index, "b", "<p>b, old</p>\n")
    write_index(index, "a", "<p>a</p>\n")
    write_index(index, "b", "<p>b, second</p>\n")
    assert sections(index) == {"a": "<p>a</p>\n", "b": "<p>b, second</p>\n"}
    text = index.read_text()
    assert text.index('href="#grid-a"') < text.index('href="#grid-b"') and "b, old" not in text
