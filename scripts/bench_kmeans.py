"""CPU benchmark of MetaCluster's clustering stage (stage 2): our `methods.layers.codebook.kmeans`
(faiss k-means on every vector) against scikit-learn's `KMeans`, on the same data in the same run.

Data: N per-edge coefficient vectors of length D = G+k+1 = 9 (G=5, k=3), made the way a MetaKAN
meta-learner makes them: a random 2-layer MLP M(z) = W2 relu(W1 z + b1) + b2, 1 -> 32 -> 9,
its weights and biases drawn like torch.nn.Linear's default (uniform in +-1/sqrt(fan_in)),
applied to N scalar prompts z ~ N(0, 1), plus Gaussian noise of std `NOISE` times the noiseless
vectors' overall std. So the vectors lie near a piecewise-linear curve in R^9, as a trained
MetaKAN layer's do with d=1 prompts. Everything is drawn from one torch.Generator seeded with
--seed, and both k-means implementations get that seed too.

For every N x K x implementation it measures
    time_s     time.perf_counter around the whole fit and final assignment: for ours the call
               `kmeans(vectors, K, seed, iterations)` (tensor in, codebook and assignments out);
               for scikit-learn `KMeans(...).fit(x)` then `.labels_`,
    inertia    sum over all vectors of the squared distance to its assigned centroid, computed
               by this script in float64 from each implementation's centroids and assignments
               (`inertia()`, the same code for both),
    codes_used how many distinct centroids the assignments use,
    iterations_run  Lloyd iterations done (faiss always does all of them; scikit-learn stops
               early only on strict convergence, since it runs with tol=0).
Both run single-start (n_init=1) with k-means++ seeding, the same iteration budget and seed:
ours as `methods.layers.codebook.kmeans` configures faiss, scikit-learn with algorithm="lloyd";
both on the same float32 array and the machine's default thread pools. Each implementation is
warmed up once on a small problem first (library loading, thread pools), then timed in
`--rounds` interleaved rounds (both implementations once per round); times are medians over
rounds, inertias are from the first round.

Writes <out>/kmeans.csv (one row per measurement) and <out>/kmeans.md (the command, the machine,
how many times faster ours is and how its inertia compares, in this same run).

    python scripts/bench_kmeans.py [--sizes 100000,1000000] [--codes 16,256] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.methods.layers.codebook import kmeans

try:  # imported as scripts.bench_kmeans (tests, python -m)
    from scripts.bench_kan import THREADING_ENV, machine
except ModuleNotFoundError:  # run as `python scripts/bench_kmeans.py`: scripts/ is sys.path[0]
    from bench_kan import THREADING_ENV, machine

SIZES = [100_000, 1_000_000]
CODES = [16, 256]
QUICK_SIZES, QUICK_CODES = [2000], [4, 16]
GRID, SPLINE_ORDER = 5, 3
DIM = GRID + SPLINE_ORDER + 1          # per-edge vector: G+k spline coefficients + base weight
HIDDEN = 32                            # meta-learner width
NOISE = 0.01                           # noise std, relative to the noiseless vectors' std
REFERENCE = "ours"
COLUMNS = ["impl", "N", "D", "K", "iterations", "iterations_run", "time_s", "inertia",
           "codes_used", "threads", "cores", "skipped"]


def meta_vectors(count: int, seed: int, dim: int = DIM, hidden: int = HIDDEN,
                 noise: float = NOISE) -> torch.Tensor:
    """(count, dim) float32 vectors from a random MetaKAN meta-learner 1 -> hidden -> dim
    applied to standard-normal scalar prompts, plus relative Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(*shape: int, fan_in: int) -> torch.Tensor:
        bound = 1 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=gen) * 2 - 1) * bound

    w1, b1 = uniform(hidden, 1, fan_in=1), uniform(hidden, fan_in=1)
    w2, b2 = uniform(dim, hidden, fan_in=hidden), uniform(dim, fan_in=hidden)
    z = torch.randn(count, 1, generator=gen)                         # (N, 1) prompts
    clean = torch.relu(z @ w1.T + b1) @ w2.T + b2                    # (N, dim)
    return clean + noise * clean.std() * torch.randn(count, dim, generator=gen)


def inertia(vectors, codebook, assignments) -> float:
    """Sum of squared distances of every vector (N, D) to its assigned code (K, D), float64."""
    x = np.asarray(vectors, dtype=np.float64)                        # (N, D)
    c = np.asarray(codebook, dtype=np.float64)                       # (K, D)
    a = np.asarray(assignments, dtype=np.int64)                      # (N,)
    assert x.ndim == 2 and c.ndim == 2 and x.shape[1] == c.shape[1] and a.shape == x.shape[:1]
    return float(((x - c[a]) ** 2).sum())


def fit_ours(vectors: torch.Tensor, codes: int, seed: int, iterations: int):
    """(seconds, codebook, assignments, iterations run) of `methods.layers.codebook.kmeans`."""
    start = time.perf_counter()
    codebook, assignments = kmeans(vectors, codes, seed, iterations=iterations)
    seconds = time.perf_counter() - start
    return seconds, codebook.numpy(), assignments.numpy(), iterations


def fit_sklearn(vectors: torch.Tensor, codes: int, seed: int, iterations: int):
    """(seconds, codebook, assignments, iterations run) of scikit-learn's Lloyd k-means."""
    from sklearn.cluster import KMeans  # only where used: importing sklearn sets KMP_* vars

    x = np.ascontiguousarray(vectors.numpy(), dtype=np.float32)      # (N, D), as ours gets
    start = time.perf_counter()
    km = KMeans(n_clusters=codes, init="k-means++", n_init=1, max_iter=iterations, tol=0.0,
                random_state=seed, algorithm="lloyd").fit(x)
    labels = km.labels_
    seconds = time.perf_counter() - start
    return seconds, km.cluster_centers_, labels, int(km.n_iter_)


IMPLS = {REFERENCE: fit_ours, "sklearn": fit_sklearn}


def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def skip_reason(impl: str, count: int, sklearn_max_n: int | None) -> str | None:
    if impl == "sklearn" and sklearn_max_n is not None and count > sklearn_max_n:
        return f"sklearn skipped above N={sklearn_max_n} (--sklearn-max-n)"
    return None


def measure(sizes: list[int], codes: list[int], seed: int, iterations: int, rounds: int,
            sklearn_max_n: int | None) -> list[dict]:
    """One row per N x K x implementation; implementations interleaved within each round."""
    for fit in IMPLS.values():  # warm-up: load libraries, start thread pools
        fit(meta_vectors(1000, seed), 4, seed, 2)
    data = {count: meta_vectors(count, seed) for count in sizes}
    rows, timed = [], []
    for count in sizes:
        for K in codes:
            for impl in IMPLS:
                row = {"impl": impl, "N": count, "D": DIM, "K": K, "iterations": iterations,
                       "threads": torch.get_num_threads(), "cores": os.cpu_count()}
                rows.append(row)
                if reason := skip_reason(impl, count, sklearn_max_n):
                    row["skipped"] = reason
                else:
                    timed.append((impl, row, []))
    for r in range(rounds):
        for impl, row, times in timed:
            seconds, codebook, assignments, done = IMPLS[impl](data[row["N"]], row["K"], seed,
                                                               iterations)
            times.append(seconds)
            if r == 0:
                row.update(iterations_run=done, inertia=inertia(data[row["N"]], codebook,
                                                                assignments),
                           codes_used=len(np.unique(assignments)))
            print(f"round {r}: {impl} N={row['N']} K={row['K']}: {seconds:.3f} s"
                  + (f", inertia {row['inertia']:.6g}" if r == 0 else ""), flush=True)
    for _, row, times in timed:
        row["time_s"] = statistics.median(times)
    return rows


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Per N and K: sklearn time / ours (how many times faster ours is), ours inertia /
    sklearn's (below 1: ours clusters tighter)."""
    measured = frame.dropna(subset=["time_s"])
    both = measured[measured.impl == "sklearn"].merge(measured[measured.impl == REFERENCE],
                                                      on=["N", "D", "K"],
                                                      suffixes=("", "_ours"))
    return pd.DataFrame({
        "N": both["N"], "K": both["K"],
        "sklearn time / ours": both["time_s"] / both["time_s_ours"],
        "ours inertia / sklearn": both["inertia_ours"] / both["inertia"],
    })


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/bench")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N")
    p.add_argument("--codes", default=",".join(map(str, CODES)), help="comma-separated K")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=25, help="Lloyd iterations (both)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--sklearn-max-n", type=int, help="skip sklearn for N above this")
    p.add_argument("--quick", action="store_true", help="N=2000, K=4,16, one round")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    codes = [int(k) for k in args.codes.split(",")]
    if args.quick:
        sizes, codes, args.rounds = QUICK_SIZES, QUICK_CODES, 1

    load_before = os.getloadavg()[0]
    frame = pd.DataFrame(measure(sizes, codes, args.seed, args.iterations, args.rounds,
                                 args.sklearn_max_n)).reindex(columns=COLUMNS)
    frame["skipped"] = frame["skipped"].astype(object)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "kmeans.csv", index=False, float_format="%.6g")
    command = shlex.join([*THREADING_ENV, "python", "scripts/bench_kmeans.py", *argv])
    threads = torch.get_num_threads()
    (out / "kmeans.md").write_text(
        f"# k-means benchmark (MetaCluster stage 2)\n\nMade by `{command}` on "
        f"{machine(threads)}, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP "
        f"threads), scikit-learn {sklearn_version()}; 1-minute load average "
        f"{load_before:.2f} before the run, {os.getloadavg()[0]:.2f} after.\n\n"
        f"Data: N vectors of D={DIM} (G={GRID}, k={SPLINE_ORDER}) from a random MetaKAN "
        f"meta-learner 1 -> {HIDDEN} -> {DIM} (ReLU) on N(0, 1) scalar prompts plus "
        f"{NOISE:g}-relative Gaussian noise, seed {args.seed}.\n\n"
        f"Ours: `methods.layers.codebook.kmeans(vectors, K, seed={args.seed}, "
        f"iterations={args.iterations})`, faiss k-means on every vector with k-means++ seeding. "
        f"scikit-learn: `KMeans(n_clusters=K, init='k-means++', n_init=1, "
        f"max_iter={args.iterations}, tol=0, random_state={args.seed}, algorithm='lloyd')`, "
        "`.fit(x)` then `.labels_`, on the same float32 array. Times (s) are perf_counter "
        f"around the whole fit and final assignment, medians over {args.rounds} interleaved "
        "round(s) after a warm-up; inertia is the float64 sum of squared distances to the "
        "assigned centroid, computed by the script the same way for both.\n\n"
        + ratios(frame).to_markdown(index=False, floatfmt=".4g") + "\n\n## Measurements\n\n"
        + frame.fillna({"skipped": ""}).to_markdown(index=False, floatfmt=".6g") + "\n")
    print(f"wrote kmeans.csv and kmeans.md to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
