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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.errors import KanbenchError, one_line_errors

TEST_LINE = re.compile(r"\btest set: Average loss: [-\d.einf]+, Accuracy: (\d+)/(\d+)")
PARAMS_LINE = re.compile(r"Number of parameters: ([\d,]+)")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class Patch:
    """A named change to one of their files: `text` appended to `file` (relative to the
    script's folder), or with `replace`, put in place of every occurrence of `anchor`. The
    file must hold `anchor` either way, so another commit of their code is never patched
    blindly."""

    file: str
    anchor: str
    text: str
    replace: bool = False


CONV_FASHION_MNIST = """    if args.dataset == 'FashionMNIST':  # kanbench: MNIST's transform_test
        transform_train = transform_test = v2.Compose([v2.ToTensor(),
                                                       v2.Normalize((0.5,), (0.5,))])
        trainset = torchvision.datasets.FashionMNIST(root="../dataset", train=True,
                                                     transform=transform_train)
        valset = torchvision.datasets.FashionMNIST(root="../dataset", train=False,
                                                   transform=transform_test)
        input_channels = 1
        num_classes = 10
    elif args.dataset == 'MNIST':"""
# kanbench's `fashion_mnist` with n_train=10000: 10% of the training set held out for
# validation (stratified, split_seed 0: tasks/common.py stratified_holdout), then the first
# 10,000 of the rest in their original order
AFTER_FASHION_MNIST = "        num_classes = 10\n    elif args.dataset == 'MNIST':"
KANBENCH_10K = """        num_classes = 10
        import numpy as _np  # kanbench: the 10,000 images kanbench's n_train=10000 sees
        from sklearn.model_selection import train_test_split as _split
        _keep, _ = _split(_np.arange(len(trainset)), test_size=0.1,
                          stratify=trainset.targets.numpy(), random_state=0)
        trainset = torch.utils.data.Subset(trainset, _np.sort(_keep)[:10000])
    elif args.dataset == 'MNIST':"""
CPU_MEMORY = """def _reset_peak(device):  # kanbench: their CUDA memory calls are skipped on a CPU
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def log_memory_usage(device, stage=""):
    if not torch.cuda.is_available():  # kanbench: nothing to log on a CPU
        return"""

# name -> the change. Applied in the order `--patch` names them.
PATCHES = {
    # image_classification/utils.py imports MetaWavKAN, which models/metawavkan.py (at
    # 94e7f1d) defines as HyperWavKAN: every script of that folder fails at import without it
    "metawavkan-name": Patch("models/metawavkan.py", "class HyperWavKAN(nn.Module):",
                             "\nMetaWavKAN = HyperWavKAN  # kanbench: the name utils.py "
                             "imports\n"),
    # models/metakan.py builds each meta-learner as MetaNet(args.input_dim, ...), which
    # train_meta.py (at 94e7f1d) never sets: the meta-learner's input is the prompt, of
    # embedding_dim numbers (scripts/authors_memory.py passes the same)
    "metakan-input-dim": Patch("models/metakan.py", "MetaNet(args.input_dim, args.hidden_dim",
                               "\n\n_their_init = MetaKAN.__init__  # kanbench: input_dim unset\n"
                               "def _init(self, args):\n"
                               "    args.input_dim = getattr(args, 'input_dim', "
                               "args.embedding_dim)\n"
                               "    _their_init(self, args)\n"
                               "MetaKAN.__init__ = _init\n"),
    # image_classification_conv/train.py imports SimpleConvWavKAN and EightSimpleConvWavKAN,
    # which its models package (at 94e7f1d) does not export
    "conv-no-wavkan": Patch("train.py", "SimpleConvWavKAN, EightSimpleConvWavKAN,", "",
                            replace=True),
    # train.py logs CUDA memory at every step: torch.cuda calls that fail without a GPU
    "conv-cpu-memory-calls": Patch("train.py", "torch.cuda.reset_peak_memory_stats(",
                                   "_reset_peak(", replace=True),
    "conv-cpu-memory-log": Patch("train.py", 'def log_memory_usage(device, stage=""):',
                                 CPU_MEMORY, replace=True),
    # their conv scripts read MNIST and CIFAR only: a Fashion-MNIST branch for
    # `--dataset FashionMNIST` (either script), at their MNIST branch's normalization
    # (x - 0.5) / 0.5 and without its training augmentation (as their MLP scripts read
    # Fashion-MNIST, and as kanbench does)
    "conv-fashion-mnist-train": Patch("train.py", "    if args.dataset == 'MNIST':",
                                      CONV_FASHION_MNIST, replace=True),
    "conv-fashion-mnist-meta": Patch("train_meta.py", "    if args.dataset == 'MNIST':",
                                     CONV_FASHION_MNIST, replace=True),
    # after the Fashion-MNIST branch: train on the 10,000 images kanbench's n_train=10000 does
    "conv-10k-train": Patch("train.py", AFTER_FASHION_MNIST, KANBENCH_10K, replace=True),
    "conv-10k-meta": Patch("train_meta.py", AFTER_FASHION_MNIST, KANBENCH_10K, replace=True),
    # their SimpleConvKAN / SimpleMetaConvKAN at a quarter of their widths (32, 64, 128, 256
    # -> 8, 16, 32, 64), what a 2-core CPU trains in minutes; kanbench's preset
    # metakan_conv4_quarter
    "conv-quarter-width-train": Patch("train.py",
                                      "SimpleConvKAN([8 * 4, 16 * 4, 32 * 4, 64 * 4]",
                                      "SimpleConvKAN([8, 16, 32, 64]", replace=True),
    "conv-quarter-width-meta": Patch("train_meta.py",
                                     "SimpleMetaConvKAN([8 * 4, 16 * 4, 32 * 4, 64 * 4]",
                                     "SimpleMetaConvKAN([8, 16, 32, 64]", replace=True),
}


def apply_patch(work: Path, name: str) -> None:
    patch = PATCHES[name]
    path = work / patch.file
    text = path.read_text() if path.is_file() else ""
    if patch.anchor not in text:
        raise KanbenchError(f"--patch {name}: {patch.file} lacks {patch.anchor!r} (another "
                            "commit of their code, or a patch it needs first?)")
    path.write_text(text.replace(patch.anchor, patch.text) if patch.replace
                    else text + patch.text)


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
