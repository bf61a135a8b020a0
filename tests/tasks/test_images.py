import os
import pickle

import pytest
import torch

from kanbench.suite.config import resolve
from kanbench.suite.errors import KanbenchError
from kanbench.suite.registry import TASKS
from tests.datafiles import write_cifar, write_mnist_like


def args_of(task, **given):
    return resolve("g", task, "dense", 0, {"task": given}).args["task"]


def test_digits_is_a_stratified_fixed_split():
    task = TASKS.create("digits")
    (xtr, ytr), (xte, yte) = task.load(args_of("digits"), "")
    assert xtr.shape[1] == 64 and len(xtr) + len(xte) == 1797
    assert xtr.min() >= -1 and xtr.max() <= 1
    assert torch.bincount(yte).min() >= 35   # every class in the 20% test split
    (_, _), (xte2, _) = task.load(args_of("digits"), "")
    assert torch.equal(xte, xte2)


@pytest.mark.parametrize("task,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_readers(tmp_path, task, folder):
    write_mnist_like(tmp_path, folder, n_train=30, n_test=20)
    (xtr, ytr), (xte, yte) = TASKS.create(task).load(args_of(task), str(tmp_path))
    assert xtr.shape == (30, 784) and xte.shape == (20, 784)
    assert ytr.tolist() == [i % 10 for i in range(30)]
    assert xtr.min() >= -1 and xtr.max() <= 1


@pytest.mark.parametrize("task,hundred", [("cifar10", False), ("cifar100", True)])
def test_cifar_readers(tmp_path, task, hundred):
    write_cifar(tmp_path, hundred=hundred, per_batch=12)
    (xtr, ytr), (xte, yte) = TASKS.create(task).load(args_of(task), str(tmp_path))
    batches = 1 if hundred else 5
    assert xtr.shape == (12 * batches, 3, 32, 32) and xte.shape == (12, 3, 32, 32)
    assert ytr.max() < (100 if hundred else 10)


@pytest.mark.parametrize("task", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_missing_dataset_is_one_clear_error(tmp_path, task):
    with pytest.raises(KanbenchError) as err:
        TASKS.create(task).check_data(args_of(task), str(tmp_path / "empty"))
    message = str(err.value)
    assert "\n" not in message and "not found" in message and str(tmp_path / "empty") in message


def test_truncated_idx_file_is_one_clear_error(tmp_path):
    raw = write_mnist_like(tmp_path, "MNIST", n_train=10, n_test=10)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(KanbenchError, match=r"mnist: .*train-images-idx3-ubyte holds 500 bytes"):
        TASKS.create("mnist").load(args_of("mnist"), str(tmp_path))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_batches_never_run_code(tmp_path):
    folder = write_cifar(tmp_path, per_batch=4)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": RunsCode(), "labels": [0]}))
    with pytest.raises(KanbenchError, match="refusing to load posix.system"):
        TASKS.create("cifar10").load(args_of("cifar10"), str(tmp_path))


def test_idx_images_build_a_convkan_on_one_channel(tmp_path):
    from kanbench.methods.layers.architectures import ConvKAN
    from kanbench.methods.layers.kan import DenseKANFactory, KANSpec

    write_mnist_like(tmp_path, "FashionMNIST", n_train=30, n_test=20)
    task = TASKS.create("fashion_mnist")
    args = args_of("fashion_mnist", arch="conv4_quarter")
    (xtr, _), (xte, _) = task.load(args, str(tmp_path))
    assert xtr.shape == (30, 1, 28, 28) and xte.shape == (20, 1, 28, 28)
    net = task.build(args, DenseKANFactory(KANSpec()))
    assert isinstance(net, ConvKAN)
    assert net(task.example_input(args, 2)).shape == (2, 10)
    with pytest.raises(KanbenchError, match="task.arch"):
        task.load(args_of("fashion_mnist", arch="conv5"), str(tmp_path))
