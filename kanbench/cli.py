"""The `kanbench` command: run, config, report, compress.

    kanbench run quick                          # the quick grid, then its tables and plots
    kanbench run smoke 'tasks=[digits]'         # overrides are key=value (quote the brackets)
    kanbench config quick 'train.max_epochs=2'  # the resolved cells, as YAML; runs nothing
    kanbench report quick                       # tables, plots and site from the records
    kanbench compress model.safetensors share_int8 codebook_size=256 --out small.safetensors

Only argparse and the grid files are imported here, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from kanbench.suite import executors, grid, tracking
from kanbench.suite.errors import one_line_errors
from kanbench.suite.report.cli import SPLITS

OVERRIDES_HELP = ("key=value overrides: 'section.key=value' sets a setting (sections task, "
                  "method, kan, train, measure); 'tasks=[a,b]', 'methods=[a,b]' and "
                  "'seeds=[0,1]' keep only those; 'methods+=[a]' adds methods to every block "
                  "of the grid; 'section.key=[a,b]' with --sweep runs each value")


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help=f"a preset ({', '.join(grid.presets())}) or a grid .yaml file")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=[A,B]",
                   help="run every value of a setting (repeatable; the product of all)")
    p.add_argument("--max-cells", type=int, default=grid.MAX_CELLS,
                   help=f"refuse a grid of more cells than this (default {grid.MAX_CELLS:,})")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_arguments(p)
    p.add_argument("--results", default="results", help="results directory (records in runs/)")
    p.add_argument("--cache", default=".cache/kanbench", help="stage artifact cache")
    p.add_argument("--data-root", default=os.environ.get("KANBENCH_DATA", "data"),
                   help="where datasets live (default $KANBENCH_DATA or ./data)")
    p.add_argument("--executor", default="local", choices=executors.NAMES,
                   help="local (this machine), ray (a Ray cluster) or slurm (submitit)")
    p.add_argument("--jobs", type=int, default=1, help="cells at once: local worker processes, "
                   "or Ray tasks in flight (default: local 1, ray as many as the cluster runs)")
    p.add_argument("--ray-address", default=None,
                   help="a running Ray cluster (host:port or ray://...); default: start one here")
    p.add_argument("--slurm-cluster", default=None, choices=["slurm", "local", "debug"],
                   help="submitit backend (default: slurm where sbatch exists, else local)")
    p.add_argument("--retry-failed", action="store_true", help="rerun cells recorded as failed")
    p.add_argument("--recompute-damaged", action="store_true",
                   help="recompute a cached stage whose files are damaged (default: refuse)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and stop")
    p.add_argument("--no-reports", action="store_true",
                   help="skip rendering the grid's tables, plots and site at the end")
    p.add_argument("--progress", default="auto", choices=("auto", "bar", "lines"),
                   help="a live bar (auto: when stdout is a terminal) or one line per event")
    tracking.add_arguments(p)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="the grid whose records to report (its name)")
    p.add_argument("--results", default="results", help="results directory (records in runs/)")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="report the test metrics (default) or the validation metrics "
                        "(what a grid's choices are made on)")
    tracking.add_arguments(p)


def add_compress_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a trained KAN: a .safetensors or .pt state dict in "
                   "efficient-kan's layout, or a file kanbench.save wrote (pykan models: "
                   "convert in Python with kanbench.from_pykan)")
    p.add_argument("method", help="a registered method (its post-training stages run)")
    p.add_argument("args", nargs="*", help="the method's args as key=value "
                   "(e.g. codebook_size=256)")
    p.add_argument("--out", required=True, help="where to write the compressed model")
    p.add_argument("--format", default="auto", choices=("auto", "efficient-kan", "kanbench"),
                   help="the state dict's layout (auto: read from its keys)")
    p.add_argument("--task", default=None, help="a registered task: evaluate the model before "
                   "and after, and fine-tune on it where the method's stages train")
    p.add_argument("--data-root", default=os.environ.get("KANBENCH_DATA", "data"))
    p.add_argument("--seed", type=int, default=0)


def parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top parser (--help, --version) and each command's."""
    top = argparse.ArgumentParser(
        prog="kanbench", description="A benchmark suite for compressing Kolmogorov-Arnold "
        "Networks: run grids of tasks x methods, report them, compress your own KANs.")
    top.add_argument("--version", action="version", version=f"kanbench {version()}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = {}
    for name, add, text in (
            ("run", add_run_arguments, "run a grid's cells (recorded ones are skipped), then "
             "write its tables, plots and site"),
            ("config", add_grid_arguments, "print a grid's resolved cells as YAML; runs nothing"),
            ("report", add_report_arguments, "write a grid's tables, plots and HTML site from "
             "its records; trains nothing"),
            ("compress", add_compress_arguments, "compress a trained KAN with a method's "
             "post-training stages and write the compressed file")):
        commands[name] = sub.add_parser(name, help=text, description=text)
        add(commands[name])
    return top, commands


def version() -> str:
    from kanbench import __version__

    return __version__


def expand(args: argparse.Namespace):
    path, doc = grid.load(args.grid)
    return path, doc, grid.expand(path, doc, args.overrides, args.max_cells, args.sweep)


def config(args: argparse.Namespace) -> int:
    import yaml

    *_, cells = expand(args)
    names = tracking.run_names(cells)
    docs = [{"run_id": cfg.run_id, "name": names[cfg.run_id], **cfg.to_dict()} for cfg in cells]
    yaml.safe_dump(docs, sys.stdout, sort_keys=False, default_flow_style=None, width=100)
    sys.stdout.flush()
    print(f"# {len(cells)} cells", file=sys.stderr)
    return 0


def report(args: argparse.Namespace) -> int:
    from kanbench.suite.report.render import all_tables, grid_frame, write_reports

    frame = grid_frame(args.results, args.grid, args.split)
    made = all_tables(frame)
    written = write_reports(frame, made, args.grid, args.results, args.split)
    if args.split == "test":  # the grid's W&B reports run holds the test split's
        tracking.log_reports(args.grid, made, [p for p in written if p.suffix == ".png"],
                             tracking.Settings.from_args(args))
    print(f"{len(written)} files written under {args.results}/: tables/"
          + (", plots/ and site/ (index.html)" if args.split == "test" else ""))
    return 0


def compress(args: argparse.Namespace) -> int:
    from kanbench import api
    from kanbench.suite.config import parse_override

    method_args = dict(parse_override(text) for text in args.args)
    model = api.load(args.model, layout=args.format)
    before = api.evaluate(model, args.task, data_root=args.data_root) if args.task else None
    small = api.compress(model, args.method, task=args.task, data_root=args.data_root,
                         seed=args.seed, **method_args)
    api.save(small, args.out)
    dense, packed = api.kan_bytes(model), api.kan_bytes(small)
    print(f"{args.out}: KAN layers {packed:,} B (dense fp32 {dense:,} B, {dense / packed:.1f}x)")
    if args.task:
        after = api.evaluate(small, args.task, data_root=args.data_root)
        metric = after["primary"]
        print(f"{args.task} {metric}: {before[metric]:.4g} before, {after[metric]:.4g} after")
    return 0


COMMANDS = {"config": config, "report": report, "compress": compress}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    top, commands = parsers()
    if not argv or argv[0] not in commands:
        top.parse_args(argv)  # --help, --version, or an error that names the commands
    # each command's own parser, which takes options between its positional arguments
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    if args.command == "run":
        from kanbench.run import run

        return run(args)
    return COMMANDS[args.command](args)


def entry() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
