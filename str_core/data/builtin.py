"""Small datasets that need no files: scikit-learn's ``digits`` and a generated MNIST-1D.

Both are held in memory as ``TensorDataset``s whose items are ``(x, y)`` with ``x`` float32 and
``y`` a 0-dim ``long`` tensor. scikit-learn and mnist1d are imported inside the loaders only.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import TensorDataset

from str_core.config import DataConfig
from str_core.data._registry import DatasetSplits, register_dataset
from str_core.data.splits import split_indices

__all__ = ["DIGITS_TEST_FRACTION", "DIGITS_TEST_SEED", "load_digits", "load_mnist1d"]

DIGITS_TEST_FRACTION = 0.2
# The digits test set never moves: its seed is a constant, not ``cfg.split_seed``.
DIGITS_TEST_SEED = 0


def _check_no_image_size(cfg: DataConfig, native: int) -> None:
    if cfg.image_size not in (None, native):
        raise ValueError(
            f"dataset {cfg.name!r} has a fixed input size of {native}; "
            f"image_size={cfg.image_size} is not supported"
        )


def _subset(x: torch.Tensor, y: torch.Tensor, idx: npt.NDArray[np.int64]) -> TensorDataset:
    index = torch.from_numpy(idx)
    return TensorDataset(x[index], y[index])


def load_digits(cfg: DataConfig) -> DatasetSplits:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes).

    The test set is a fixed stratified 20% (seed :data:`DIGITS_TEST_SEED`); validation is carved
    from the rest with ``cfg.val_fraction`` and ``cfg.split_seed``. Pixels are scaled to
    ``[0, 1]`` and then standardised with the mean and standard deviation of the training split.

    Args:
        cfg: data configuration; ``root``, ``augment`` are ignored.

    Returns:
        Splits whose ``x`` has shape ``(1, 8, 8)``.

    Raises:
        ValueError: if ``cfg.image_size`` is set to anything but 8.
    """
    _check_no_image_size(cfg, 8)
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # (1797, 8, 8), in [0, 1]
    labels = np.asarray(bunch.target, dtype=np.int64)  # (1797,)

    rest, test_idx = split_indices(labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    train_local, val_local = split_indices(labels[rest], cfg.val_fraction, cfg.split_seed)
    train_idx, val_idx = rest[train_local], rest[val_local]

    train_pixels = images[train_idx]
    mean, std = float(train_pixels.mean()), float(train_pixels.std())
    x = torch.from_numpy((images - mean) / std).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels)
    return DatasetSplits(
        name=cfg.name,
        train=_subset(x, y, train_idx),
        val=_subset(x, y, val_idx) if cfg.val_fraction > 0 else None,
        test=_subset(x, y, test_idx),
        num_classes=10,
        input_shape=(1, 8, 8),
    )


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]
]:
    """Generate MNIST-1D with its default arguments, once per process (it takes a few seconds).

    ``make_dataset`` seeds numpy's and Python's global RNGs; their states are restored so loading
    the data does not change the caller's randomness. The arrays are read-only because the cache
    shares them.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (
        np.asarray(data["x"], dtype=np.float32),
        np.asarray(data["y"], dtype=np.int64),
        np.asarray(data["x_test"], dtype=np.float32),
        np.asarray(data["y_test"], dtype=np.int64),
    )
    for a in arrays:
        a.flags.writeable = False
    return arrays


def load_mnist1d(cfg: DataConfig) -> DatasetSplits:
    """MNIST-1D (Greydanus, 2020), generated offline with the package's default arguments.

    4000 training and 1000 test sequences of length 40, 10 classes; validation is carved from the
    training sequences with ``cfg.val_fraction`` and ``cfg.split_seed``. The generator already
    centres and scales the data, so no further normalisation is applied.

    Args:
        cfg: data configuration; ``root``, ``augment`` are ignored.

    Returns:
        Splits whose ``x`` has shape ``(1, 40)``.

    Raises:
        ValueError: if ``cfg.image_size`` is set to anything but 40.
    """
    _check_no_image_size(cfg, 40)
    x_np, y_np, x_test_np, y_test_np = _mnist1d_arrays()
    # astype copies, giving tensors their own writable memory.
    x = torch.from_numpy(x_np.astype(np.float32)).unsqueeze(1)  # (4000, 1, 40)
    y = torch.from_numpy(y_np.astype(np.int64))
    x_test = torch.from_numpy(x_test_np.astype(np.float32)).unsqueeze(1)  # (1000, 1, 40)
    y_test = torch.from_numpy(y_test_np.astype(np.int64))
    train_idx, val_idx = split_indices(y_np, cfg.val_fraction, cfg.split_seed)
    return DatasetSplits(
        name=cfg.name,
        train=_subset(x, y, train_idx),
        val=_subset(x, y, val_idx) if cfg.val_fraction > 0 else None,
        test=TensorDataset(x_test, y_test),
        num_classes=10,
        input_shape=(1, 40),
    )


register_dataset(
    "digits",
    load_digits,
    description="scikit-learn digits: 1797 8x8 grey images, 10 classes (built in)",
)
register_dataset(
    "mnist1d",
    load_mnist1d,
    description="MNIST-1D: 5000 length-40 sequences, 10 classes, generated offline (built in)",
)
