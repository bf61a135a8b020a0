"""scripts/authors_memory.py builds the authors' model classes from a checkout and measures
them as grid `memory` measures kanbench's; here "their" classes are small stand-ins with
the constructor and attributes their code has (the real ones need their repository)."""

import pandas as pd

from tests.conftest import run_script

THEIR_KAN = """import torch
class KAN(torch.nn.Module):
    def __init__(self, args):
        super().__init__()
        self.n = args.grid_size + args.spline_order
        widths = [args.input_size] + args.layers_width + [args.output_size]
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a * self.n, b)
                                          for a, b in zip(widths[:-1], widths[1:]))
    def forward(self, x):
        for layer in self.layers:
            x = layer(x.repeat(1, self.n))
        return x
"""
THEIR_METAKAN = """import torch
class MetaKAN(torch.nn.Module):
    def __init__(self, args):
        super().__init__()
        self.metanet = torch.nn.ModuleList([torch.nn.Linear(args.input_dim, args.hidden_dim)])
        self.embeddings = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(args.input_size * 4, args.embedding_dim))])
        self.out = args.output_size
    def forward(self, x):
        w = self.metanet[0](self.embeddings[0]).sum(-1).reshape(-1, 4)   # (in, 4)
        return (x @ w)[:, :self.out]
"""


def test_their_models_are_measured_with_their_optimizers(tmp_path):
    models = tmp_path / "MetaKAN" / "image_classification" / "models"
    models.mkdir(parents=True)
    (models / "kan.py").write_text(THEIR_KAN)
    (models / "metakan.py").write_text(THEIR_METAKAN)
    done = run_script("authors_memory.py", "--checkout", str(tmp_path / "MetaKAN"),
                      "--widths", "512,256", "--grid-sizes", "5", "--batch", "8",
                      "--results", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "r" / "authors" / "memory.csv")
    assert list(table["model"]) == ["KAN", "MetaKAN"]
    kan, meta = table.to_dict("records")
    # KAN: 512 x 8 x 256 weights (4 MiB) and Adam's two moments of each
    assert kan["parameters_MiB"] == 4.0 == kan["gradients_MiB"]
    assert kan["optimizer_state_MiB"] == 8.0
    assert kan["generated_weights_MiB"] == 0 == meta["generated_weights_MiB"]
    text = (tmp_path / "r" / "authors" / "memory.md").read_text()
    assert "--widths 512,256" in text and "their commit unknown" in text


def test_a_checkout_without_their_models_is_one_line(tmp_path):
    done = run_script("authors_memory.py", "--checkout", str(tmp_path))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "does not exist" in done.stderr
    done = run_script("authors_memory.py", "--checkout", str(tmp_path), "--widths", "12,x")
    assert done.returncode == 2 and "comma-separated" in done.stderr
