"""Datasets as arrays: the embedded `digits` (scikit-learn's), CIFAR10/100 and Fashion-MNIST (read from wherever
sources.locate finds them) loaded into a Dataset, with a validation split drawn from the training set by seed,
and, where a configuration asks for them, stratified subsets (`stratified_subset`): of the training set drawn
from the seed, of the test set the same for every seed.

Images stay uint8 NHWC in memory; the training and evaluation pipelines that feed them to a model are
pipelines.py's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from lrnoise.data import idx
from lrnoise.data.archives import CIFAR, read_cifar_archive, read_cifar_folder
from lrnoise.data.sources import check_dataset, locate
from lrnoise.errors import LrnoiseError


@dataclass
class Dataset:
    """Raw images NHWC as stored (uint8 for CIFAR and digits) and integer labels."""

    name: str
    num_classes: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""  # where the images came from: an archive or folder, or scikit-learn's bundled digits

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def _load_cifar(name: str, data_dir: str | os.PathLike | None) -> tuple[tuple[np.ndarray, ...], str]:
    """(the four arrays, the archive or folder they were read from)."""
    spec = CIFAR[name]
    path = locate(name, data_dir)  # MD5 already checked there; md5sum remembers it, so it is not hashed twice
    return (read_cifar_archive(path, spec) if path.is_file() else read_cifar_folder(path, spec)), str(path)


DIGITS_SOURCE = "sklearn.datasets.load_digits"


def _load_digits() -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16), with a fixed 20 % test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[..., None]  # N x 8 x 8 x 1
    y = bunch.target.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(x))  # test split fixed whatever the seed
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


TEST_SUBSET_SEED = 0  # the test subset's draw: one fixed subset, so every seed and lr is scored on the same images


def stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of `count` of `labels`: each class gets its share of `count` (the largest remainders round
    up, lower classes first on a tie), its members drawn at random with `seed`."""
    if not 1 <= count <= len(labels):
        raise LrnoiseError(f"a subset of {count} images cannot be drawn from {len(labels)}")
    classes, sizes = np.unique(labels, return_counts=True)
    exact = count * sizes / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact, kind="stable")[: count - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_examples: int | None = None,
    test_examples: int | None = None,
) -> Dataset:
    """Loads `name`; the validation split is drawn from the training set with `seed` (the test set is fixed).
    `train_examples`: a stratified subset of the training set drawn with `seed`, before the validation split
    (which comes out of it); `test_examples`: a stratified test subset, the same whatever the seed. None: all."""
    check_dataset(name)
    if not 0.0 <= val_fraction < 1.0:
        raise LrnoiseError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if name == "digits":
        (x_train, y_train, x_test, y_test), source = _load_digits(), DIGITS_SOURCE
        num_classes = 10
    elif name == idx.FASHION_MNIST:
        (x_train, y_train, x_test, y_test), source = idx.load_fashion_mnist(locate(name, data_dir))
        num_classes = idx.NUM_CLASSES
    else:
        (x_train, y_train, x_test, y_test), source = _load_cifar(name, data_dir)
        num_classes = CIFAR[name].num_classes
    if train_examples is not None:
        kept = stratified_subset(y_train, train_examples, seed)
        x_train, y_train = x_train[kept], y_train[kept]
    if test_examples is not None:
        kept = stratified_subset(y_test, test_examples, TEST_SUBSET_SEED)
        x_test, y_test = x_test[kept], y_test[kept]
    order = np.random.RandomState(seed).permutation(len(x_train))
    n_val = int(round(len(x_train) * val_fraction))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Dataset(
        name, num_classes, x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test, source
    )
