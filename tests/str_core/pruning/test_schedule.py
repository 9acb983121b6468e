"""The cubic gradual-pruning schedule of Zhu & Gupta (2017)."""

from __future__ import annotations

import itertools

import pytest

from str_core.pruning import cubic_sparsity


def test_values_follow_the_formula() -> None:
    # t0 = 10, t1 = 20, s_f = 0.8
    assert cubic_sparsity(0, 10, 20, 0.8) == 0.0
    assert cubic_sparsity(10, 10, 20, 0.8) == 0.0
    assert cubic_sparsity(15, 10, 20, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))  # 0.7
    assert cubic_sparsity(12, 10, 20, 0.8) == pytest.approx(0.8 * (1 - 0.8**3))
    assert cubic_sparsity(19, 10, 20, 0.8) == pytest.approx(0.8 * (1 - 0.1**3))
    assert cubic_sparsity(20, 10, 20, 0.8) == 0.8
    assert cubic_sparsity(500, 10, 20, 0.8) == 0.8


def test_monotone_and_front_loaded() -> None:
    values = [cubic_sparsity(t, 0, 100, 0.9) for t in range(101)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[50] > 0.9 * 0.5  # most of the pruning happens early


def test_degenerate_and_invalid_spans() -> None:
    assert cubic_sparsity(4, 5, 5, 0.5) == 0.0
    assert cubic_sparsity(5, 5, 5, 0.5) == 0.5
    with pytest.raises(ValueError, match="before start_step"):
        cubic_sparsity(0, 6, 5, 0.5)
