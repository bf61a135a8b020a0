"""Kuzushiji-MNIST (Clanuwat et al. 2018): 70,000 28x28 images of ten cursive Japanese
characters, in MNIST's IDX format under <data_root>/KMNIST/raw/, read by torchvision. Only
`normalize: range` is offered: kanbench cannot compute the training set's pixel statistics
here, and will not ship copied ones."""

from __future__ import annotations

from torchvision import datasets

from kanbench.suite.registry import TASKS
from kanbench.tasks.images import IDXImages


@TASKS.register("kmnist")
class KMNIST(IDXImages):
    reader = datasets.KMNIST
    choices = {**IDXImages.choices, "normalize": ("range",)}
    how = ("put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
           "t10k-labels-idx1-ubyte from github.com/rois-codh/kmnist there (or run where "
           "torchvision can download)")
