"""scripts/authors_reference.py runs a script of the authors' in a temporary copy beside the
data and keeps what its log says; here "their" script is a stand-in that prints their log
lines (the real one needs their repository, which kanbench does not ship)."""

import pandas as pd
import pytest

from scripts.authors_reference import PATCHES, main, parse_log
from tests.conftest import run_script
from tests.datafiles import write_mnist_like

THEIR_SCRIPT = """import os, sys
seed = int(sys.argv[sys.argv.index("--seed") + 1])
raw = os.path.join("..", "dataset", "FashionMNIST", "raw")
assert sorted(os.listdir(raw))[0] == "t10k-images-idx3-ubyte", os.listdir(raw)
open("logs_written_here", "w").write("x")        # their scripts write under the cwd
print("Number of parameters: 1,234")
for epoch, correct in enumerate([8000 + seed, 8500 + seed, 8400 + seed]):
    print(f"\\ttrain set: Average loss: 0.1, Accuracy: 1/2 (50%)")
    print(f"\\ttest set: Average loss: 0.3, Accuracy: {correct}/10000 (84%)")
"""


@pytest.fixture
def checkout(tmp_path):
    their = tmp_path / "MetaKAN" / "image_classification"
    their.mkdir(parents=True)
    (their / "train.py").write_text(THEIR_SCRIPT)
    write_mnist_like(tmp_path / "data", "FashionMNIST")
    return tmp_path


def test_each_seed_runs_apart_and_the_last_and_best_epochs_are_kept(checkout):
    results = checkout / "results"
    code = main(["--checkout", str(checkout / "MetaKAN"), "--entry",
                 "image_classification/train.py", "--name", "kan", "--seeds", "0", "2",
                 "--data-root", str(checkout / "data"), "--results", str(results),
                 "--", "--model", "KAN"])
    assert code == 0
    table = pd.read_csv(results / "authors" / "kan.csv")
    assert list(table["seed"]) == [0, 2]
    assert list(table["last_test_accuracy"]) == [0.84, 0.8402]
    assert list(table["best_test_accuracy"]) == [0.85, 0.8502]
    assert list(table["epochs"]) == [3, 3] and list(table["parameters"]) == [1234, 1234]
    text = (results / "authors" / "kan.md").read_text()
    assert "mean 84.01%" in text and "changed only by nothing" in text
    assert not (checkout / "MetaKAN" / "image_classification" / "logs_written_here").exists()


def test_their_log_is_parsed_per_epoch_and_a_log_without_results_is_refused():
    log = "Number of parameters: 25,778\n\ttest set: Average loss: 0.4, Accuracy: 8665/10000 " \
          "(87%)\n\ttrain set: Average loss: 0.3, Accuracy: 5/10 (50%)\n"
    assert parse_log(log) == {"test_accuracies": [0.8665], "parameters": 25778}
    from kanbench.suite.errors import KanbenchError
    with pytest.raises(KanbenchError, match="printed no test accuracy"):
        parse_log("Traceback ...\nImportError: cannot import name\n")


@pytest.mark.parametrize("args,message", [
    (["--entry", "image_classification/nope.py"], "does not exist"),
    (["--entry", "image_classification/train.py", "--patch", "metawavkan-name"],
     "lacks 'class HyperWavKAN"),
    (["--entry", "image_classification/train.py", "--data-root", "/nonexistent"],
     "run `make data` first"),
    (["--entry", "image_classification/train.py", "--name", "../x"], "--name '../x'"),
])
def test_bad_arguments_are_one_line(checkout, args, message):
    defaults = {"--name": "x", "--data-root": str(checkout / "data")}
    defaults = [a for k, v in defaults.items() if k not in args for a in (k, v)]
    done = run_script("authors_reference.py", "--checkout", str(checkout / "MetaKAN"),
                      "--seeds", "0", "--results", str(checkout / "r"), *defaults, *args)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert not (checkout / "r").exists()
    assert "metawavkan-name" in PATCHES


def test_patches_append_or_replace_in_the_temporary_copy_only(tmp_path):
    from scripts.authors_reference import apply_patch

    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("from models import  SimpleConvKAN, SimpleConvWavKAN, "
                                   "EightSimpleConvWavKAN, SimpleConv\n"
                                   "def get_loaders(args):\n"
                                   "    if args.dataset == 'MNIST':\n        pass\n")
    apply_patch(work, "conv-no-wavkan")
    apply_patch(work, "conv-fashion-mnist-train")
    apply_patch(work, "conv-10k-train")     # anchored on what the branch above inserted
    text = (work / "train.py").read_text()
    assert "WavKAN" not in text and text.count("elif args.dataset == 'MNIST':") == 1
    assert text.index("FashionMNIST(root") < text.index("[:10000]") < text.index("elif")
    compile(text, "train.py", "exec")                       # still Python
    from kanbench.suite.errors import KanbenchError
    with pytest.raises(KanbenchError, match="conv-10k-meta: train_meta.py lacks"):
        apply_patch(work, "conv-10k-meta")
