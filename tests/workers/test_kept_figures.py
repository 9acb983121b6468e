"""Kept figures: redrawn for the next trial, they give the files a newly built figure gives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from str_core.train.callbacks import EpochMetrics, LayerSnapshot
from workers.kept_figures import KeptFigure
from workers.plots import BudgetFigure, DynamicsFigure, RedrawableFigure, save_png

NAMES = ("features.0", "features.3", "features.6", "classifier.1")


def history(
    seed: int, epochs: int, *, spread: float = 3.0, names: tuple[str, ...] = NAMES
) -> list[EpochMetrics]:
    """A made-up training history of ``names`` (the first layer dense), thresholds growing by a
    factor ``spread`` over the epochs (above 100: a log-scale threshold panel)."""
    rng = np.random.default_rng(seed)
    final = rng.uniform(0.0, 1.0, len(names))
    out = []
    for epoch in range(1, epochs + 1):
        progress = epoch / epochs
        layers = {}
        for i, name in enumerate(names):
            params = 150 * (i + 1) ** 3
            sparsity = 0.0 if i == 0 else float(final[i] * progress)
            threshold = None if i == 0 else 0.004 * (i + 1) * spread**progress
            nonzero = round(params * (1 - sparsity))
            layers[name] = LayerSnapshot(sparsity, threshold, nonzero, params)
        total = sum(s.params for s in layers.values())
        overall = 1 - sum(s.nonzero for s in layers.values()) / total
        out.append(EpochMetrics(epoch, {"sparsity": overall}, layers))
    return out


def _built(kind: type[RedrawableFigure[Any]], data: Any, path: Path, title: str) -> bytes:
    return save_png(kind(data, title=title).figure, path).read_bytes()


MANY = tuple(f"layer{i}" for i in range(15))  # more than a legend names: a colour bar
# each: the data of successive trials, all with the same layers
DYNAMICS_TRIALS = [
    pytest.param([history(0, 30), history(1, 25, spread=500.0), history(2, 40)], id="log-scale"),
    pytest.param([history(3, 12), history(4, 5), history(5, 20, spread=1000.0)], id="marked"),
    pytest.param([history(6, 24, names=MANY), history(7, 22, names=MANY)], id="colour-bar"),
]


@pytest.mark.parametrize("trials", DYNAMICS_TRIALS)
def test_a_redrawn_dynamics_figure_is_the_built_one(
    trials: list[list[EpochMetrics]], tmp_path: Path
) -> None:
    kept = KeptFigure(DynamicsFigure)
    figures = []
    for i, trial in enumerate(trials):
        title = f"trial {i}: λ={10.0**-i:g}" + " and more" * i  # titles of other widths
        drawn = kept.save_png(trial, tmp_path / f"kept{i}.png", title=title).read_bytes()
        assert drawn == _built(DynamicsFigure, trial, tmp_path / f"built{i}.png", title), i
        figures.append(kept.figure)
    assert all(figure is figures[0] for figure in figures)  # one figure, redrawn


def test_a_redrawn_budget_figure_is_the_built_one(tmp_path: Path) -> None:
    kept = KeptFigure(BudgetFigure)
    figures = []
    for i, seed in enumerate([0, 1, 2, 3]):
        layers = history(seed, 10)[-1 if seed else 0].layers  # seed 0: almost dense
        title = "" if i == 2 else f"trial {i}"  # the default title too
        drawn = kept.save_png(layers, tmp_path / f"kept{i}.png", title=title).read_bytes()
        assert drawn == _built(BudgetFigure, layers, tmp_path / f"built{i}.png", title), i
        figures.append(kept.figure)
    assert all(figure is figures[0] for figure in figures)


def test_other_layers_get_a_new_figure(tmp_path: Path) -> None:
    kept = KeptFigure(BudgetFigure)
    kept.save_png(history(0, 5)[-1].layers, tmp_path / "a.png")
    first = kept.figure
    assert first is not None
    bigger = {
        name: LayerSnapshot(s.sparsity, s.threshold, s.nonzero + 1, s.params + 1)
        for name, s in history(1, 5)[-1].layers.items()
    }
    renamed = history(2, 5, names=("a", "b", "c", "d"))[-1].layers
    for layers in (bigger, renamed, {}):  # other sizes, other names, no layers
        drawn = kept.save_png(layers, tmp_path / "b.png", title="t").read_bytes()
        assert kept.figure is not first
        assert drawn == _built(BudgetFigure, layers, tmp_path / "c.png", "t")
        first = kept.figure
    assert first is not None
    with pytest.raises(ValueError, match="same layers"):
        first.update(bigger)
    with pytest.raises(ValueError, match="same layers"):
        DynamicsFigure(history(0, 5)).update(history(0, 25))  # unmarked epochs: another layout


def test_threads_get_their_own_figures(tmp_path: Path) -> None:
    kept = KeptFigure(DynamicsFigure)
    trials = [history(seed, 21 + seed, spread=500.0 if seed % 2 else 3.0) for seed in range(4)]

    def draw(job: tuple[int, int]) -> bytes:
        round_, seed = job
        path = tmp_path / f"{round_}-{seed}.png"
        return kept.save_png(trials[seed], path, title=f"t{seed}").read_bytes()

    jobs = [(r, s) for r in range(2) for s in range(4)]
    with ThreadPoolExecutor(4) as pool:
        drawn = dict(zip(jobs, pool.map(draw, jobs), strict=True))
    for (_, seed), image in drawn.items():
        assert image == _built(DynamicsFigure, trials[seed], tmp_path / "built.png", f"t{seed}")
