"""Per-layer budgets: uniform, ERK (hand-checked and against the STR paper's table), rescaling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from str_core.budgets import read_paper_budget_table
from str_core.layers import prunable_layers
from str_core.models import create_model
from str_core.pruning import (
    PruneConfig,
    erk_budget,
    erk_densities,
    layer_sizes,
    prune_budget,
    scale_budget,
    uniform_budget,
)

from .conftest import small_net

PAPER_TABLE = Path(__file__).parents[2] / "data" / "SparsityDistributions_90_ResNet50.csv"


def overall(budget: dict[str, float], sizes: dict[str, int]) -> float:
    return sum(budget[n] * sizes[n] for n in sizes) / sum(sizes.values())


def test_erk_matches_the_formula_by_hand() -> None:
    shapes = {"conv": (4, 2, 3, 3), "fc1": (10, 4), "fc2": (2, 10)}
    # sizes 72, 40, 20 (N = 132); raw scores sum/prod: 12/72, 14/40, 12/20.
    # density 0.5 -> 66 nonzeros. First ε = 66 / (12 + 14 + 12) = 1.737 puts fc2 at
    # 1.737 · 0.6 = 1.04 > 1: fc2 becomes dense (20 weights) and ε = (66 − 20) / (12 + 14).
    eps = 46 / 26
    expected = {"conv": eps * 12 / 72, "fc1": eps * 14 / 40, "fc2": 1.0}
    got = erk_densities(shapes, 0.5)
    assert got == pytest.approx(expected, rel=1e-12)
    assert 72 * got["conv"] + 40 * got["fc1"] + 20 * got["fc2"] == pytest.approx(66)
    # without the capacity correction in play every layer scales with the same ε
    low = erk_densities(shapes, 0.1)
    eps_low = 13.2 / 38
    assert low == pytest.approx({n: eps_low * sum(s) / math.prod(s) for n, s in shapes.items()})
    with pytest.raises(ValueError, match="density"):
        erk_densities(shapes, 1.5)


def test_erk_budget_hits_the_target_and_returns_sparsities() -> None:
    model = small_net()
    budget = erk_budget(model, 0.8)
    sizes = layer_sizes(model)
    assert list(budget) == ["conv", "fc1", "fc2"] == list(sizes)
    assert overall(budget, sizes) == pytest.approx(0.8)
    assert all(0.0 <= s <= 1.0 for s in budget.values())
    # the smallest layers (largest sum/prod) stay densest
    assert budget["fc2"] < budget["fc1"]


def test_erk_of_resnet50_matches_the_papers_erk_column() -> None:
    """The table's ERK column is in whole percent: every one of the 54 layers, ours rounded to a
    whole percent, is the paper's value (first conv and classifier included, no layer forced
    dense); the capacity correction makes layer1.0.conv1 dense in both."""
    model = create_model("resnet50", num_classes=1000)
    names = [n for n, _ in prunable_layers(model)]
    paper = read_paper_budget_table(PAPER_TABLE, "ERK", names)
    ours = erk_budget(model, 0.9)
    assert list(ours) == names and len(names) == 54
    assert {n: round(100 * ours[n]) for n in names} == {n: round(100 * paper[n]) for n in names}
    assert max(abs(ours[n] - paper[n]) for n in names) < 0.005
    assert ours["layer1.0.conv1"] == 0.0 == paper["layer1.0.conv1"]
    assert overall(ours, layer_sizes(model)) == pytest.approx(0.9)
    assert uniform_budget(model, 0.9) == pytest.approx(
        read_paper_budget_table(PAPER_TABLE, "Uniform", names)
    )


def test_uniform_budget() -> None:
    assert uniform_budget(small_net(), 0.7) == {"conv": 0.7, "fc1": 0.7, "fc2": 0.7}
    with pytest.raises(ValueError, match="target"):
        uniform_budget(small_net(), 1.2)


def test_scale_budget_keeps_the_shape_and_hits_the_target() -> None:
    sizes = {"a": 1000, "b": 100, "c": 10}
    budget = {"a": 0.9, "b": 0.5, "c": 0.0}  # c dense: stays dense
    # 900 + 50 = 950 zeros of 1110: 85.6%; ask for 95%: 1110 · 0.05 = 55.5 nonzeros, 10 in c,
    # 45.5 shared by a and b in proportion to their densities 0.1 : 0.5 -> ε = 45.5 / 150
    scaled = scale_budget(budget, sizes, 0.95)
    eps = 45.5 / 150
    assert scaled == pytest.approx({"a": 1 - 0.1 * eps, "b": 1 - 0.5 * eps, "c": 0.0})
    assert overall(scaled, sizes) == pytest.approx(0.95)
    # less sparse than the budget: b would pass density 1 and is capped (capacity correction)
    loose = scale_budget({"a": 0.9, "b": 0.5, "c": 1.0}, sizes, 0.5)
    assert loose["b"] == 0.0 and loose["c"] == 1.0  # a layer at density 0 stays empty
    assert loose["a"] == pytest.approx(1 - (555 - 100) / 1000)
    assert overall(loose, sizes) == pytest.approx(0.5)
    # a budget already at its target is unchanged
    assert scale_budget(scaled, sizes, 0.95) == pytest.approx(scaled)


def test_scale_budget_refuses_wrong_names_and_unreachable_targets() -> None:
    sizes = {"a": 1000, "b": 100}
    with pytest.raises(ValueError, match=r"missing \['b'\], unknown \['z'\]"):
        scale_budget({"a": 0.5, "z": 0.5}, sizes, 0.9)
    with pytest.raises(ValueError, match="unreachable"):
        scale_budget({"a": 0.0, "b": 0.5}, sizes, 0.95)  # a must stay dense: 1000 > 55 nonzeros
    with pytest.raises(ValueError, match="unreachable"):
        scale_budget({"a": 1.0, "b": 0.5}, sizes, 0.5)  # only b may hold weights: 100 < 550
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scale_budget({"a": 1.5, "b": 0.5}, sizes, 0.5)


def test_prune_budget_dispatches_on_the_allocation() -> None:
    model = small_net()
    assert prune_budget(model, PruneConfig(target_sparsity=0.6)) == uniform_budget(model, 0.6)
    erk = PruneConfig(target_sparsity=0.6, allocation="erk")
    assert prune_budget(model, erk) == erk_budget(model, 0.6)
    given = {"conv": 0.2, "fc1": 0.9, "fc2": 0.5}
    cfg = PruneConfig(target_sparsity=0.6, allocation="given", budget=given)
    assert prune_budget(model, cfg) == scale_budget(given, layer_sizes(model), 0.6)
