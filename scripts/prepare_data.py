"""Prepare the datasets that can be had offline under the data root.

Fashion-MNIST: Debian's dataset-fashion-mnist ships the four gzipped IDX files in
/usr/share/datasets/fashion-mnist/; torchvision reads them unpacked from
<data_root>/FashionMNIST/raw/. The synthetic detection data (shapes_voc, shapes_coco) is
written under <data_root>/shapes/ (the tasks would write it on first use too). Digits
(scikit-learn) and the Feynman equations (pykan) ship inside their packages.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]


def unpack_fashion_mnist(source: Path, data_root: Path) -> str:
    raw = data_root / "FashionMNIST" / "raw"
    if all((raw / name).exists() for name in IDX_FILES):
        return f"fashion_mnist: ready in {raw}"
    if not all((source / f"{name}.gz").exists() for name in IDX_FILES):
        return (f"fashion_mnist: not prepared ({source} lacks the .gz files; install Debian's "
                "dataset-fashion-mnist, or let torchvision download it where the network allows)")
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        tmp = raw / f".{name}.tmp"
        with gzip.open(source / f"{name}.gz", "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(raw / name)
    return f"fashion_mnist: unpacked {source} into {raw}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.environ.get("KANBENCH_DATA", "data"))
    p.add_argument("--fashion-source", default=str(DEBIAN_FASHION))
    args = p.parse_args()
    print(unpack_fashion_mnist(Path(args.fashion_source), Path(args.data_root)))
    from kanbench.tasks.detection import ensure_shapes

    voc, coco = ensure_shapes(Path(args.data_root))
    print(f"shapes_voc, shapes_coco: ready in {voc} and {coco}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
