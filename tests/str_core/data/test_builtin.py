"""Tests of the built-in ``digits`` and ``mnist1d`` datasets."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sized
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from str_core.config import DataConfig
from str_core.data import load_dataset
from str_core.data._registry import DatasetSplits
from str_core.data.builtin import _mnist1d_arrays


def _len(ds: object) -> int:
    assert isinstance(ds, Sized)
    return len(ds)


def _stack(ds: Dataset[Any] | None) -> tuple[torch.Tensor, torch.Tensor]:
    items = [ds[i] for i in range(_len(ds))]  # type: ignore[index]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset(DataConfig(name="digits", val_fraction=0.1, split_seed=0))


@pytest.fixture(scope="module")
def mnist1d() -> DatasetSplits:
    return load_dataset(DataConfig(name="mnist1d", val_fraction=0.1, split_seed=0))


def test_mnist1d_generation_leaves_global_rngs_alone() -> None:
    # First in the file, so that in a normal run this is the one generation the tests pay for.
    _mnist1d_arrays.cache_clear()
    np.random.seed(123)
    random.seed(123)
    load_dataset(DataConfig(name="mnist1d"))  # generates: make_dataset seeds the globals
    after = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    assert after == (np.random.random(), random.random())


def test_digits_shapes_dtypes_and_labels(digits: DatasetSplits) -> None:
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.input_shape == (1, 8, 8)
    assert digits.val is not None
    for split in (digits.train, digits.val, digits.test):
        x, y = split[0]
        assert x.shape == (1, 8, 8)
        assert x.dtype == torch.float32
        assert y.dtype == torch.long
        assert y.ndim == 0
    _, y = _stack(digits.train)
    assert set(y.tolist()) == set(range(10))


def test_digits_split_sizes(digits: DatasetSplits) -> None:
    assert digits.val is not None
    assert _len(digits.test) == 359  # round(0.2 * 1797)
    assert _len(digits.val) == 144  # round(0.1 * 1438)
    assert _len(digits.train) == 1797 - 359 - 144


def test_digits_train_is_standardised(digits: DatasetSplits) -> None:
    x, _ = _stack(digits.train)
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std(correction=0)) - 1) < 1e-4
    # Other splits use the train statistics, so they are close to but not exactly standard.
    assert digits.val is not None
    x_val, _ = _stack(digits.val)
    assert abs(float(x_val.mean())) < 0.2


def _raw_images(
    splits: DatasetSplits, split: Dataset[tuple[torch.Tensor, torch.Tensor]]
) -> list[bytes]:
    """Undo the standardisation: pixel 0 maps to the minimum, 16 to the maximum value."""
    x_all = torch.cat([_stack(s)[0] for s in (splits.train, splits.test)])
    lo, hi = float(x_all.min()), float(x_all.max())
    x, _ = _stack(split)
    raw = torch.round((x - lo) / (hi - lo) * 16).to(torch.uint8)
    return [bytes(r.flatten().tolist()) for r in raw]


def test_digits_splits_partition_the_dataset(digits: DatasetSplits) -> None:
    from sklearn.datasets import load_digits

    assert digits.val is not None
    parts = [_raw_images(digits, s) for s in (digits.train, digits.val, digits.test)]
    together = Counter(parts[0]) + Counter(parts[1]) + Counter(parts[2])
    expected = Counter(bytes(r.astype(np.uint8).tolist()) for r in load_digits().data)
    assert together == expected


def test_digits_test_split_is_stratified(digits: DatasetSplits) -> None:
    from sklearn.datasets import load_digits

    counts = np.bincount(load_digits().target)
    _, y_test = _stack(digits.test)
    np.testing.assert_allclose(np.bincount(y_test.numpy()), 0.2 * counts, atol=1)


def test_digits_test_set_is_fixed_and_val_follows_split_seed(digits: DatasetSplits) -> None:
    other = load_dataset(DataConfig(name="digits", val_fraction=0.1, split_seed=1))
    same = load_dataset(DataConfig(name="digits", val_fraction=0.1, split_seed=0))
    assert digits.val is not None
    assert other.val is not None
    assert same.val is not None
    # Normalisation depends on the training split, so compare the raw pixels.
    assert sorted(_raw_images(digits, digits.test)) == sorted(_raw_images(other, other.test))
    assert _raw_images(digits, digits.val) == _raw_images(same, same.val)
    assert sorted(_raw_images(digits, digits.val)) != sorted(_raw_images(other, other.val))


def test_digits_without_validation() -> None:
    splits = load_dataset(DataConfig(name="digits", val_fraction=0.0))
    assert splits.val is None
    assert _len(splits.train) == 1797 - 359


def test_digits_rejects_image_size() -> None:
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(DataConfig(name="digits", image_size=16))


def test_mnist1d_shapes_sizes_and_labels(mnist1d: DatasetSplits) -> None:
    assert mnist1d.num_classes == 10
    assert mnist1d.input_shape == (1, 40)
    assert mnist1d.val is not None
    assert (_len(mnist1d.train), _len(mnist1d.val), _len(mnist1d.test)) == (3600, 400, 1000)
    x, y = _stack(mnist1d.train)
    assert x.shape == (3600, 1, 40)
    assert x.dtype == torch.float32
    assert y.dtype == torch.long
    assert set(y.tolist()) == set(range(10))
    _, y_val = _stack(mnist1d.val)
    assert np.bincount(y_val.numpy()).min() >= 35  # stratified: about 40 per class


def test_mnist1d_split_determinism_and_no_overlap(mnist1d: DatasetSplits) -> None:
    same = load_dataset(DataConfig(name="mnist1d", val_fraction=0.1, split_seed=0))
    other = load_dataset(DataConfig(name="mnist1d", val_fraction=0.1, split_seed=1))
    assert mnist1d.val is not None
    assert same.val is not None
    assert other.val is not None
    x_val, _ = _stack(mnist1d.val)
    assert torch.equal(x_val, _stack(same.val)[0])
    assert not torch.equal(x_val, _stack(other.val)[0])
    train_rows = {tuple(r.tolist()) for r in _stack(mnist1d.train)[0].flatten(1)}
    val_rows = {tuple(r.tolist()) for r in x_val.flatten(1)}
    test_rows = {tuple(r.tolist()) for r in _stack(mnist1d.test)[0].flatten(1)}
    assert len(train_rows) + len(val_rows) == 4000
    assert not train_rows & val_rows
    assert not (train_rows | val_rows) & test_rows


def test_mnist1d_tensors_do_not_share_the_cache(mnist1d: DatasetSplits) -> None:
    x_before = _mnist1d_arrays()[0].copy()
    fresh = load_dataset(DataConfig(name="mnist1d"))
    fresh.train[0][0].fill_(123.0)
    np.testing.assert_array_equal(_mnist1d_arrays()[0], x_before)
