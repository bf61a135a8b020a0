"""The training memory of the MetaKAN authors' own MLP KAN and MetaKAN models, measured here
exactly as grid `memory` measures kanbench's: results/authors/memory.{csv,md}.

kanbench ships none of their code: give it a checkout of their repository
(github.com/Murphyzc/MetaKAN, commit 94e7f1d); their `image_classification/models` are
imported from it as they are and built with the arguments their scripts pass (KAN: efficient-
kan layers, their init; MetaKAN: one meta-learner per layer, hidden width 32, prompts of 1,
64 outputs generated at a time), at each grid size. Each model gets the optimizer their
script gives it (KAN: Adam with weight decay 5e-4; MetaKAN: AdamW on meta-learners and
prompts), and `suite.measure.training_memory` measures one training iteration at the batch
size: the model, the optimizer's state and a forward+backward in a forked process (the
suite's RSS probe on CPU, torch.cuda.max_memory_allocated on CUDA). Their generated weights
are not a kanbench layer, so they count in "activations and workspace".

    python scripts/authors_memory.py --checkout ../MetaKAN [--widths 784,32,10 784,256,10]
        [--grid-sizes 5 100] [--batch 1024]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.errors import KanbenchError, one_line_errors


def their_args(widths: list[int], grid_size: int) -> argparse.Namespace:
    """What their train.py / train_meta.py hand the model classes at their defaults."""
    import torch

    return argparse.Namespace(input_size=widths[0], layers_width=widths[1:-1],
                              output_size=widths[-1], grid_size=grid_size, spline_order=3,
                              grid_range=[-1, 1], base_activation=torch.nn.SiLU(),
                              embedding_dim=1, input_dim=1, hidden_dim=32, o_batch_size=64)


def optimizers(kind: str):
    """Their script's optimizer for the model (image_classification/train.py; train_meta.py's
    two AdamWs keep the same state as one with their two groups)."""
    import torch

    if kind == "KAN":
        return lambda m: torch.optim.Adam(m.parameters(), lr=0.01, weight_decay=5e-4)
    return lambda m: torch.optim.AdamW([
        {"params": m.metanet.parameters(), "lr": 1e-3, "weight_decay": 1e-4},
        {"params": m.embeddings.parameters(), "lr": 1e-2, "weight_decay": 5e-4}])


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkout", required=True)
    p.add_argument("--widths", nargs="+", default=["784,32,10"],
                   help="one network per value: its widths, comma-separated")
    p.add_argument("--grid-sizes", type=int, nargs="+", default=[5, 100])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--results", default="results")
    args = p.parse_args(argv)
    folder = Path(args.checkout).resolve() / "image_classification"
    try:
        networks = [[int(w) for w in value.split(",")] for value in args.widths]
    except ValueError:
        raise KanbenchError(f"--widths {' '.join(args.widths)}: integers, comma-separated, "
                            "e.g. 784,32,10") from None
    if any(len(n) < 2 or min(n) < 1 for n in networks) or min(args.grid_sizes) < 1 \
            or args.batch < 1:
        raise KanbenchError("--widths needs two or more positive widths a network; "
                            "--grid-sizes and --batch must be positive")
    if not (folder / "models" / "metakan.py").is_file():
        raise KanbenchError(f"{folder / 'models' / 'metakan.py'} does not exist: give "
                            "--checkout a checkout of github.com/Murphyzc/MetaKAN")
    sys.path.insert(0, str(folder))
    # the memory probe's server imports their modules to unpickle the model it measures
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder),
                                                             os.environ.get("PYTHONPATH")]))
    import pandas as pd
    import torch

    from kanbench.suite.measure import training_memory
    from scripts.authors_reference import commit_of, write_result

    classes = {"KAN": importlib.import_module("models.kan").KAN,
               "MetaKAN": importlib.import_module("models.metakan").MetaKAN}
    rows = []
    for widths, grid_size, (kind, cls) in itertools.product(networks, args.grid_sizes,
                                                            classes.items()):
        torch.manual_seed(0)
        model = cls(their_args(widths, grid_size))
        example = torch.rand(args.batch, widths[0]) * 2 - 1
        memory = training_memory(model, example, optimizers(kind))
        rows.append({"model": kind, "widths": str(widths), "grid_size": grid_size,
                     "batch": args.batch,
                     "train_peak_MiB": round(memory["train_peak_bytes"] / 2**20, 1),
                     **{f"{k}_MiB": round(v / 2**20, 1) for k, v in memory["itemized"].items()},
                     "device": memory["device"]})
        print(f"their {kind} {widths}, G={grid_size}: {rows[-1]['train_peak_MiB']} MiB",
              flush=True)
    frame = pd.DataFrame(rows)
    command = "python scripts/authors_memory.py " + " ".join(sys.argv[1:] if argv is None
                                                              else argv)
    text = (f"# The MetaKAN authors' MLP models: training memory, measured here\n\n"
            f"Made by `{command}` on {platform.platform()}, {os.cpu_count()} CPUs, with "
            f"their commit {commit_of(folder)}; measured as grid `memory` measures "
            "kanbench's (suite.measure.training_memory), their generated weights inside "
            "activations and workspace.\n\n" + frame.to_markdown(index=False) + "\n")
    write_result(Path(args.results), "memory", text, frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
