"""Compress your own efficient-kan model with kanbench: SHARe-KAN Int8 and MetaCluster-style
k-means of the edges into a codebook, each written to a file, reloaded and evaluated.

efficient-kan is not on PyPI, so `EfficientKANLinear` below is a small layer of its layout:
the state dict an `efficient_kan.KAN` saves (per layer `grid`, `base_weight`,
`spline_weight`, `spline_scaler`) and its forward (SiLU base plus B-splines by Cox-de Boor).
With efficient-kan installed, pass your `KAN` or its state dict instead. It trains a
[64, 32, 10] KAN on scikit-learn's digits for a few seconds on a CPU (70/30 split of its own),
then:

    python examples/compress_efficient_kan.py [--epochs 60] [--out compressed/]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

import kanbench


class EfficientKANLinear(nn.Module):
    """A KAN layer in efficient-kan's layout. (batch, in) -> (batch, out)."""

    def __init__(self, inp: int, out: int, grid_size: int = 5, spline_order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        h = (grid_range[1] - grid_range[0]) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1) * h + grid_range[0]
        self.register_buffer("grid", knots.expand(inp, -1).contiguous())  # (in, G+2k+1)
        self.base_weight = nn.Parameter(torch.randn(out, inp) / inp ** 0.5)
        self.spline_weight = nn.Parameter(0.1 * torch.randn(out, inp, grid_size + spline_order))
        self.spline_scaler = nn.Parameter(torch.ones(out, inp))
        self.k = spline_order

    def b_splines(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in) -> (batch, in, G+k): Cox-de Boor on the layer's grid."""
        g, x = self.grid, x.unsqueeze(-1)
        bases = ((x >= g[:, :-1]) & (x < g[:, 1:])).to(x.dtype)
        for p in range(1, self.k + 1):
            bases = ((x - g[:, :-(p + 1)]) / (g[:, p:-1] - g[:, :-(p + 1)]) * bases[..., :-1]
                     + (g[:, p + 1:] - x) / (g[:, p + 1:] - g[:, 1:-p]) * bases[..., 1:])
        return bases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef = (self.spline_weight * self.spline_scaler.unsqueeze(-1)).flatten(1)
        return F.linear(F.silu(x), self.base_weight) + F.linear(self.b_splines(x).flatten(1),
                                                                 coef)


class EfficientKAN(nn.Module):
    def __init__(self, widths: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(EfficientKANLinear(a, b)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=60, help="full-batch Adam steps")
    p.add_argument("--out", default="compressed", help="where the compressed files go")
    args = p.parse_args(argv)
    torch.manual_seed(0)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 8 - 1          # (1797, 64) in [-1, 1]
    y = torch.tensor(digits.target)
    train, test = train_test_split(range(len(y)), test_size=0.3, stratify=digits.target,
                                   random_state=0)
    model = EfficientKAN([64, 32, 10])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(args.epochs):
        optimizer.zero_grad()
        F.cross_entropy(model(x[train]), y[train]).backward()
        optimizer.step()

    kan = kanbench.from_efficient_kan(model.state_dict())     # or from_efficient_kan(model)
    with torch.no_grad():
        gap = (kan(x[test]) - model(x[test])).abs().max().item()
    print(f"efficient-kan model: test accuracy {accuracy(model, x[test], y[test]):.4f}; as a "
          f"kanbench KAN: {accuracy(kan, x[test], y[test]):.4f} (largest output gap {gap:.1e})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dense = kanbench.kan_bytes(kan)
    print(f"dense KAN layers: {dense:,} B (fp32)")
    for method, settings in (("share_int8", {"codebook_size": 256}),
                             ("metacluster", {"codebook_size": 16, "finetune_epochs": 0})):
        small = kanbench.compress(kan, method, **settings)
        path = out / f"digits_{method}.safetensors"
        file_bytes = kanbench.save(small, path)
        loaded = kanbench.load(path)
        with torch.no_grad():
            assert torch.equal(loaded(x[test]), small(x[test])), "reloaded model differs"
        print(f"{method} {settings}: {path} holds {file_bytes:,} B ({dense / file_bytes:.1f}x "
              f"smaller); reloaded test accuracy {accuracy(loaded, x[test], y[test]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
