"""Run the MetaKAN authors' own training scripts here, one seed at a time, and keep what
their logs say: results/authors/<name>.{csv,md}.

kanbench ships none of their code. Give it a checkout of their public repository
(github.com/Murphyzc/MetaKAN; the claims table reads commit 94e7f1d) and the script of
theirs to run; everything after `--` goes to that script unchanged. Their scripts write
`./logs` and `./results` under the working folder and read Fashion-MNIST from
`../dataset`, so each seed runs in a fresh temporary copy of the script's folder beside a
`dataset/FashionMNIST/raw` that links to kanbench's data root (`make data`). Their files
are used as they are, but for the few named changes in `PATCHES` that a script needs to run
here at all, applied to the temporary copy only when `--patch` names them and listed in the
output.

Per seed it keeps the test accuracy of every epoch their log prints, the last epoch's (what
kanbench reports) and the best (what their results.csv reports), the parameter count their
log prints and the wall time:

    pip install fvcore   # their scripts import it
    python scripts/authors_reference.py --checkout ../MetaKAN --name fashion_mnist_kan \\
        --entry image_classification/train.py --seeds 0 1 2 -- --model KAN \\
        --layers_width 32 --dataset FMNIST --epochs 10 --batch-size 1024 --lr 0.01 \\
        --optimizer adam --scheduler exponential
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.errors import KanbenchError, one_line_errors

TEST_LINE = re.compile(r"\btest set: Average loss: [-\d.einf]+, Accuracy: (\d+)/(\d+)")
PARAMS_LINE = re.compile(r"Number of parameters: ([\d,]+)")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


# name -> (file relative to the script's folder, text it must hold, text appended to it).
# A patch fails loudly where that text is missing, so another commit of their code is never
# patched blindly.
PATCHES = {
    # image_classification/utils.py imports MetaWavKAN, which models/metawavkan.py (at
    # 94e7f1d) defines as HyperWavKAN: every script of that folder fails at import without it
    "metawavkan-name": ("models/metawavkan.py", "class HyperWavKAN(nn.Module):",
                        "\nMetaWavKAN = HyperWavKAN  # kanbench: the name utils.py imports\n"),
    # models/metakan.py builds each meta-learner as MetaNet(args.input_dim, ...), which
    # train_meta.py (at 94e7f1d) never sets: the meta-learner's input is the prompt, of
    # embedding_dim numbers (scripts/authors_memory.py passes the same)
    "metakan-input-dim": ("models/metakan.py", "MetaNet(args.input_dim, args.hidden_dim",
                          "\n\n_their_init = MetaKAN.__init__  # kanbench: input_dim unset\n"
                          "def _init(self, args):\n"
                          "    args.input_dim = getattr(args, 'input_dim', args.embedding_dim)\n"
                          "    _their_init(self, args)\n"
                          "MetaKAN.__init__ = _init\n"),
}


def apply_patch(work: Path, name: str) -> None:
    relative, anchor, tail = PATCHES[name]
    path = work / relative
    text = path.read_text() if path.is_file() else ""
    if anchor not in text:
        raise KanbenchError(f"--patch {name}: {relative} lacks {anchor!r} (another commit of "
                            "their code?)")
    path.write_text(text + tail)


def parse_log(text: str) -> dict:
    """Per-epoch test accuracies (fractions) and the parameter count from their log."""
    accuracies = [int(c) / int(n) for c, n in TEST_LINE.findall(text)]
    params = PARAMS_LINE.search(text)
    if not accuracies or params is None:
        raise KanbenchError("their script printed no test accuracy or parameter count; "
                            "its output ends: " + " | ".join(text.strip().splitlines()[-3:]))
    return {"test_accuracies": accuracies, "parameters": int(params.group(1).replace(",", ""))}


def commit_of(checkout: Path) -> str:
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"


def write_result(results: Path, name: str, text: str, frame) -> None:
    """results/authors/<name>.md (`text`) and .csv (`frame`), each written whole under a
    temporary name and renamed."""
    out = results / "authors"
    out.mkdir(parents=True, exist_ok=True)
    for suffix, body in (("md", text), ("csv", frame.to_csv(index=False))):
        tmp = out / f".{name}.{suffix}.tmp"
        tmp.write_text(body)
        tmp.replace(out / f"{name}.{suffix}")
    print(f"written {out}/{name}.md")


def stage_data(data_root: Path, into: Path) -> None:
    """`into/FashionMNIST/raw/<idx files>` as links to kanbench's prepared data."""
    raw = data_root / "FashionMNIST" / "raw"
    missing = [n for n in IDX_FILES if not (raw / n).is_file()]
    if missing:
        raise KanbenchError(f"{raw} lacks {missing[0]}: run `make data` first")
    target = into / "FashionMNIST" / "raw"
    target.mkdir(parents=True)
    for name in IDX_FILES:
        (target / name).symlink_to((raw / name).resolve())


def run_seed(checkout: Path, entry: str, seed: int, their_args: list[str], data_root: Path,
             python: str, patches: list[str]) -> dict:
    """One run of their script in a temporary copy; its parsed log and wall time."""
    script = checkout / entry
    with tempfile.TemporaryDirectory(prefix="kanbench-authors-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(script.parent, work, ignore=shutil.ignore_patterns(
            "logs", "results", "__pycache__"))
        for name in patches:
            apply_patch(work, name)
        stage_data(data_root, Path(tmp) / "dataset")
        command = [python, script.name, *their_args, "--seed", str(seed)]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=work, capture_output=True, text=True,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        seconds = time.perf_counter() - start
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise KanbenchError(f"their {entry} failed at seed {seed} (exit "
                                f"{done.returncode}): {output.strip().splitlines()[-1]}")
    return {"seconds": seconds, **parse_log(output)}


@one_line_errors
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    ours, theirs = argv[:split], argv[split + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkout", required=True, help="a checkout of their repository")
    p.add_argument("--entry", required=True, help="their script, relative to the checkout")
    p.add_argument("--name", required=True, help="results/authors/<name>.{csv,md}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-root", default=os.environ.get("KANBENCH_DATA", "data"))
    p.add_argument("--results", default="results")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--patch", nargs="*", default=[], choices=sorted(PATCHES),
                   help="named changes their script needs to run here (PATCHES)")
    args = p.parse_args(ours)
    checkout = Path(args.checkout)
    if not (checkout / args.entry).is_file():
        raise KanbenchError(f"{checkout / args.entry} does not exist: give --checkout a "
                            "checkout of github.com/Murphyzc/MetaKAN")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        raise KanbenchError(f"--name {args.name!r}: letters, digits, '_', '.', '-' only")
    rows = []
    for seed in args.seeds:
        run = run_seed(checkout, args.entry, seed, theirs, Path(args.data_root), args.python,
                       args.patch)
        accuracies = run["test_accuracies"]
        rows.append({"seed": seed, "epochs": len(accuracies),
                     "last_test_accuracy": accuracies[-1],
                     "best_test_accuracy": max(accuracies),
                     "parameters": run["parameters"], "seconds": round(run["seconds"], 1),
                     "test_accuracy_by_epoch": " ".join(f"{a:.4f}" for a in accuracies)})
        print(f"seed {seed}: last epoch {accuracies[-1]:.2%}, best {max(accuracies):.2%}, "
              f"{run['parameters']:,} parameters, {run['seconds']:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    command = "python scripts/authors_reference.py " + shlex.join(argv)
    last = frame["last_test_accuracy"]
    text = (f"# {args.name}: the MetaKAN authors' code, run here\n\n"
            f"Made by `{command}` on {platform.platform()}, {os.cpu_count()} CPUs, with "
            f"their commit {commit_of(checkout)} (`{args.entry}`; changed only by "
            f"{', '.join(args.patch) or 'nothing'}: scripts/authors_reference.py's PATCHES). "
            "Last epoch's "
            f"test accuracy over {len(frame)} seeds: mean {last.mean():.2%}, std "
            f"{last.std(ddof=1) if len(frame) > 1 else float('nan'):.2%}.\n\n"
            + frame.to_markdown(index=False) + "\n")
    write_result(Path(args.results), args.name, text, frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
