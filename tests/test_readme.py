"""README stays short and true: at most 15 KB, every `kanbench` command in it parses and
resolves (as `kanbench config`, which runs nothing), every override is quoted for zsh, its
links resolve, and the license it names is there."""

import re
import shlex

import pytest

from kanbench import cli
from kanbench.cli import main as kanbench
from tests.conftest import REPO, temp_method

README = (REPO / "README.md").read_text()


def commands() -> list[str]:
    """The `kanbench` commands of README's bash blocks and inline code."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [re.split(r"\s#\s", line)[0].strip() for block in blocks
             for line in block.splitlines()]
    inline = [" ".join(code.split()) for code in re.findall(r"`(kanbench [^`]+)`", README)]
    return [line for line in lines + inline if line.startswith("kanbench ")]


def test_readme_is_short_and_names_its_license():
    assert len(README.encode()) <= 15_000
    assert (REPO / "LICENSE").read_text().startswith("MIT License") and "MIT" in README


def test_every_link_in_readme_resolves():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target


@pytest.mark.parametrize("line", commands())
def test_every_readme_command_is_quoted_for_zsh_and_resolves(line, capsys):
    # an unquoted [ is a glob in zsh: every bracket must sit inside quotes
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", line)
    assert "[" not in unquoted, f"unquoted brackets in: {line}"
    argv = shlex.split(line)[1:]
    _, parsers = cli.parsers()
    assert argv[0] in parsers
    if "--help" in argv:
        return
    parsers[argv[0]].parse_intermixed_args(argv[1:])   # every option and argument is known
    if argv[0] in ("run", "config"):                   # the grid and overrides resolve
        from kanbench.methods.dense import Dense

        class MyMethod(Dense):                          # README's example method
            pass

        with temp_method("my_method", MyMethod):
            assert kanbench(["config", *argv[1:]]) == 0
        assert capsys.readouterr().out.startswith("- run_id:")


def test_readme_shows_the_commands():
    shown = {shlex.split(line)[1] for line in commands()}
    assert {"run", "config", "compress"} <= shown


def test_readme_kernel_table_is_the_benchmark_summary():
    """README's speed table is results/bench/gather_summary.md, as bench_gather.py wrote it."""
    summary = (REPO / "results" / "bench" / "gather_summary.md").read_text()
    table = summary[summary.index("|"):]
    assert table in README


def test_readme_claims_table_is_the_committed_one():
    """README shows results/tables/claims.md's table as scripts/claims_table.py wrote it."""
    claims = (REPO / "results" / "tables" / "claims.md").read_text()
    table = claims[claims.index("| paper |"):claims.index("\n\nVerdict:")]
    assert table in README
