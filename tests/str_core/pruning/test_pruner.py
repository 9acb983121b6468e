"""Pruning baselines trained with the real trainer on digits end exactly at their target."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from str_core.budgets import read_budget, write_budget
from str_core.config import Allocation, PruneConfig, PruneMethod, STRConfig, TrainConfig
from str_core.metrics import sparsity_stats
from str_core.pruning import (
    GradualPruner,
    MagnitudeMask,
    erk_budget,
    layer_masks,
    layer_sizes,
    prune_budget,
    pruning_callbacks,
    scale_budget,
)
from str_core.train import Callback, Trainer, build_run

from .conftest import DIGITS, FAST, layer_sparsities, train_pruned

# digits_mlp layers: classifier.1 (64x256 = 16384), classifier.3 (256x128 = 32768),
# classifier.5 (128x10 = 1280)
GIVEN = {"classifier.1": 0.95, "classifier.3": 0.85, "classifier.5": 0.3}


def assert_at_target(model: torch.nn.Module, prune: PruneConfig) -> None:
    """Overall sparsity is the target up to one rounded count per layer, and every layer is at
    its budget up to the rounding of its own count."""
    stats = sparsity_stats(model)
    sizes = layer_sizes(model)
    assert abs(stats.sparsity - prune.target_sparsity) <= len(sizes) / (2 * stats.total)
    if prune.method == "global_magnitude":
        assert stats.total - stats.nonzero == round(prune.target_sparsity * stats.total)
        return
    budget = prune_budget(model, prune)
    for name, sparsity in layer_sparsities(model).items():
        assert abs(sparsity - budget[name]) <= 0.5 / sizes[name] + 1e-12, name


@pytest.mark.parametrize(
    ("method", "allocation", "model"),
    [
        ("gmp", "uniform", "digits_mlp"),
        ("gmp", "erk", "digits_cnn"),
        ("gmp", "given", "digits_mlp"),
        ("global_magnitude", "uniform", "digits_mlp"),
        ("dnw", "uniform", "digits_mlp"),
        ("dnw", "given", "digits_mlp"),
    ],
)
def test_trained_baseline_ends_at_the_target(
    method: PruneMethod, allocation: Allocation, model: str
) -> None:
    budget = GIVEN if allocation == "given" else None
    prune = PruneConfig(target_sparsity=0.9, method=method, allocation=allocation, budget=budget)
    trained, result = train_pruned(prune, model=model)
    assert_at_target(trained, prune)
    assert result.final.scalars["sparsity"] == pytest.approx(sparsity_stats(trained).sparsity)
    assert result.final.scalars["test_acc"] > 0.2  # it learnt something (10 classes)
    if allocation == "erk":
        assert prune_budget(trained, prune) == erk_budget(trained, 0.9)


class PrunedCount(Callback):
    """Number of pruned weights after every step (runs after the pruner)."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        masks = layer_masks(trainer.model).values()
        self.counts.append(sum(m.pruned for m in masks if isinstance(m, MagnitudeMask)))


@pytest.mark.parametrize("method", ["gmp", "global_magnitude"])
def test_masks_follow_the_cubic_schedule(method: PruneMethod) -> None:
    prune = PruneConfig(target_sparsity=0.8, method=method, start_fraction=0.2, end_fraction=0.7)
    counter = PrunedCount()
    pruner = pruning_callbacks(prune)[0]
    run = build_run("digits_mlp", DIGITS, FAST, None, prune=prune)
    Trainer(run.model, FAST, run.data, callbacks=[pruner, counter]).fit()
    assert isinstance(pruner, GradualPruner)
    spe = pruner.steps_per_epoch
    assert spe == math.ceil(len(run.data.train) / FAST.batch_size) == 11  # type: ignore[arg-type]
    total = FAST.epochs * spe  # 33 steps
    assert (pruner.start_step, pruner.end_step) == (round(0.2 * total), round(0.7 * total))
    assert pruner.interval == 2
    counts = counter.counts
    assert len(counts) == total
    changes = [t for t in range(2, total + 1) if counts[t - 1] != counts[t - 2]]
    assert changes  # pruned during training
    assert all(pruner.is_update_step(t) for t in changes)
    assert all(b - a >= pruner.interval for a, b in itertools.pairwise(changes[:-1]))
    assert all(a <= b for a, b in itertools.pairwise(counts))  # masks only remove weights
    assert counts[pruner.start_step - 1] == 0
    n = sum(layer_sizes(run.model).values())
    final = counts[pruner.end_step - 1]
    assert abs(final - 0.8 * n) <= 1.5 and counts[-1] == final  # target at the end step
    assert 0 < counts[(pruner.start_step + pruner.end_step) // 2] < final


@pytest.mark.parametrize("method", ["gmp", "global_magnitude", "dnw"])
def test_resumed_run_ends_with_the_same_masks(method: PruneMethod, tmp_path: Path) -> None:
    prune = PruneConfig(target_sparsity=0.9, method=method, start_fraction=0.1, end_fraction=0.9)
    cfg = TrainConfig(epochs=4, batch_size=128, lr=0.1, seed=1)
    straight, _ = train_pruned(prune, cfg=cfg)

    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer: Trainer, metrics: object) -> None:
            if trainer.epoch == 2:
                trainer.request_stop()

    halfway, first = train_pruned(
        prune, cfg=cfg, callbacks=(StopAfterTwo(),), checkpoint_dir=str(tmp_path)
    )
    assert len(first.history) == 2
    assert 0 < sparsity_stats(halfway).sparsity < 0.9 or method == "dnw"  # pruning goes on
    resumed, result = train_pruned(prune, cfg=cfg, checkpoint_dir=str(tmp_path), resume=True)
    assert [m.epoch for m in result.history] == [1, 2, 3, 4]
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert_at_target(resumed, prune)


def test_budget_file_transfers_by_layer_name(tmp_path: Path) -> None:
    path = tmp_path / "budget.csv"
    write_budget(path, GIVEN)  # overall 86.9% on digits_mlp
    methods: tuple[PruneMethod, ...] = ("gmp", "dnw")
    for method in methods:
        prune = PruneConfig(
            target_sparsity=0.9,
            method=method,
            allocation="given",
            budget=read_budget(path),
        )
        trained, _ = train_pruned(prune)
        sizes = layer_sizes(trained)
        # densities 0.05 : 0.15 : 0.7 scaled by one ε so that 10% of the weights remain
        eps = 0.1 * sum(sizes.values()) / sum((1 - GIVEN[n]) * sizes[n] for n in sizes)
        got = layer_sparsities(trained)
        for name in sizes:
            assert got[name] == pytest.approx(1 - eps * (1 - GIVEN[name]), abs=0.5 / sizes[name])
        assert scale_budget(GIVEN, sizes, 0.9) == pytest.approx(
            {n: 1 - eps * (1 - GIVEN[n]) for n in sizes}
        )
        assert_at_target(trained, prune)


def test_budget_with_unknown_or_missing_layers_is_refused() -> None:
    wrong = {**GIVEN, "classifier.7": 0.5}
    with pytest.raises(ValueError, match=r"unknown \['classifier.7'\]"):
        build_run(
            "digits_mlp",
            DIGITS,
            FAST,
            None,
            prune=PruneConfig(method="gmp", allocation="given", budget=wrong),
        )
    partial = {"classifier.1": 0.9}
    with pytest.raises(ValueError, match=r"missing \['classifier.3', 'classifier.5'\]"):
        build_run(
            "digits_mlp",
            DIGITS,
            FAST,
            None,
            prune=PruneConfig(method="dnw", allocation="given", budget=partial),
        )


def test_factory_and_misuse() -> None:
    assert pruning_callbacks(PruneConfig(method="dnw")) == []
    (pruner,) = pruning_callbacks(PruneConfig(method="global_magnitude"))
    assert isinstance(pruner, GradualPruner)
    with pytest.raises(ValueError, match="dnw"):
        GradualPruner(PruneConfig(method="dnw"))
    with pytest.raises(ValueError, match="not both"):
        build_run("digits_mlp", DIGITS, FAST, STRConfig(), prune=PruneConfig())
    run = build_run("digits_mlp", DIGITS, FAST, None)  # no masks attached
    trainer = Trainer(run.model, FAST, run.data, callbacks=pruning_callbacks(PruneConfig()))
    with pytest.raises(ValueError, match="attach_masks"):
        trainer.fit()
