"""Seeded, stratified train/validation splits of an index range.

Every loader carves its validation set (and the digits loader its fixed test set) with
:func:`split_indices`. The split depends only on the labels, the fraction and the seed: it uses
numpy's ``default_rng`` (PCG64, whose stream numpy keeps stable across versions and platforms), so
the same arguments give the same split on every machine and in every trial of a search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["split_indices"]

IndexArray = npt.NDArray[np.int64]


def split_indices(
    labels: Sequence[int] | npt.NDArray[np.integer] | torch.Tensor,
    val_fraction: float,
    seed: int,
) -> tuple[IndexArray, IndexArray]:
    """Split ``range(len(labels))`` into train and validation indices, stratified by label.

    The validation set holds ``round(n * val_fraction)`` indices (at least one when
    ``val_fraction > 0``), shared out over the classes in proportion to their sizes (largest
    remainder, ties to the smaller label). A class never gives all its examples to validation, so
    every class present in ``labels`` stays in the training set. Within a class the chosen
    indices are a uniform random sample drawn with ``numpy.random.default_rng(seed)``.

    Args:
        labels: one integer label per example.
        val_fraction: share of the examples to put in validation, in ``[0, 1)``.
        seed: seed of the split.

    Returns:
        ``(train_idx, val_idx)``: disjoint, sorted ``int64`` arrays whose union is
        ``range(len(labels))``. ``val_idx`` is empty when ``val_fraction == 0``.

    Raises:
        ValueError: if ``val_fraction`` is outside ``[0, 1)`` or ``labels`` is not 1-D.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    n = len(y)
    if n == 0 or val_fraction == 0:
        return np.arange(n, dtype=np.int64), np.empty(0, dtype=np.int64)

    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    per_class = _allocate(counts, val_fraction, n)

    rng = np.random.default_rng(seed)
    # Indices grouped by class, ascending within each class (a stable sort keeps their order).
    by_class = np.split(np.argsort(inverse, kind="stable").astype(np.int64), np.cumsum(counts)[:-1])
    val_parts = [
        rng.permutation(members)[:take] for members, take in zip(by_class, per_class, strict=True)
    ]
    val_idx = np.sort(np.concatenate(val_parts))
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


def _allocate(counts: npt.NDArray[np.int64], val_fraction: float, n: int) -> list[int]:
    """Validation examples per class: largest-remainder shares of the total, capped at size - 1."""
    capacity = [int(c) - 1 for c in counts]  # every class keeps one training example
    total = min(max(1, math.floor(n * val_fraction + 0.5)), sum(capacity))
    quotas = [int(c) * total / n for c in counts]
    shares = [min(math.floor(q), cap) for q, cap in zip(quotas, capacity, strict=True)]
    # Hand out what is left, largest remainder first; sorted() is stable, so ties go to the
    # smaller label. Loop because capped classes cannot take more.
    order = sorted(range(len(counts)), key=lambda c: -(quotas[c] - math.floor(quotas[c])))
    missing = total - sum(shares)
    while missing > 0:
        for c in order:
            if missing == 0:
                break
            if shares[c] < capacity[c]:
                shares[c] += 1
                missing -= 1
    return shares
