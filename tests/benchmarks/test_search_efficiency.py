"""The search-efficiency benchmark's own parts: plain bisection, the landing stopper, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ray.tune.search import Searcher

from benchmarks.search_efficiency import (
    BisectionSearcher,
    LandedStopper,
    Outcome,
    bench_spec,
    main,
    totals,
)


def test_bisection_halves_the_log_interval_one_trial_at_a_time() -> None:
    searcher = BisectionSearcher(0.9, 0.005, (1e-4, 1e-1))
    first = searcher.suggest("a")
    assert isinstance(first, dict)
    assert first["weight_decay"] == pytest.approx(math.sqrt(1e-5), rel=1e-3)
    assert searcher.suggest("b") is None, "sequential: nothing while a trial runs"
    searcher.on_trial_complete("a", {"sparsity": 0.6})
    second = searcher.suggest("b")
    assert isinstance(second, dict)
    assert second["weight_decay"] == pytest.approx(10 ** ((-2.5 - 1) / 2), rel=1e-3)
    searcher.on_trial_complete("b", {"sparsity": 0.95})
    third = searcher.suggest("c")
    assert isinstance(third, dict)
    assert math.log10(third["weight_decay"]) == pytest.approx((-2.5 - 1.75) / 2, abs=1e-3)
    searcher.on_trial_complete("c", {"sparsity": 0.9031})
    assert searcher.suggest("d") == Searcher.FINISHED


def test_bisection_pushes_the_window_out_when_the_target_lies_beyond() -> None:
    searcher = BisectionSearcher(0.9, 0.005, (1e-4, 1e-1))
    for n in range(12):
        config = searcher.suggest(f"t{n}")
        assert isinstance(config, dict)
        searcher.on_trial_complete(f"t{n}", {"sparsity": 0.5})  # always below
    assert searcher.hi > math.log(1e-1), "the upper end moved past the starting window"


def test_stopper_ends_the_experiment_only_on_a_full_length_landing() -> None:
    stopper = LandedStopper(0.9, 0.005, epochs=10)
    stopper("a", {"epoch": 5, "sparsity": 0.9})  # mid-training: not a landing
    assert not stopper.stop_all()
    stopper("a", {"epoch": 10, "sparsity": 0.88})
    assert not stopper.stop_all()
    stopper("b", {"epoch": 10, "sparsity": 0.904})
    assert stopper.stop_all()


def test_spec_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = bench_spec("mnist1d", 0.95, epochs=10, budget=12, early_stopping=True)
    assert spec.model == "mnist1d_cnn" and spec.search.early_stopping
    outcomes = [
        Outcome("digits", 0.9, "bisection", True, 4, 40, 20.0, 0.9, 0.97, [1e-2], [0.9]),
        Outcome("digits", 0.9, "ours-seq", True, 2, 20, 12.0, 0.9, 0.97, [1e-2], [0.9]),
    ]
    assert "| ours-seq | 1/1 | 2 | 20 | 0.50 | 12 |" in totals(outcomes)
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps([o.__dict__ for o in outcomes]))
    main(["--report", str(saved)])
    printed = capsys.readouterr().out
    assert "| digits | 0.9 | ours-seq | yes | 2 | 20 | 12 | 90.00% | 97.00% |" in printed
