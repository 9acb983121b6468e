"""The results benchmark's own parts: its comparison specs, tables and figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.results import (
    ABLATIONS,
    MAIN_METHODS,
    budget_table,
    comparison_spec,
    method_table,
    report,
)


def test_the_ablations_run_only_where_asked() -> None:
    plain = comparison_spec("digits", 0.95, epochs=5, seeds=[0, 1], ablations=False)
    full = comparison_spec("mnist1d", 0.9, epochs=5, seeds=[0], ablations=True)
    assert plain.methods == list(MAIN_METHODS) and plain.model == "digits_cnn"
    assert plain.comparison.seeds == [0, 1] and plain.training.epochs == 5
    assert full.methods == [*MAIN_METHODS, *ABLATIONS] and full.model == "mnist1d_cnn"


def _row(method: str, acc: float, flops: float = 2.0e5) -> dict[str, Any]:
    return {
        "method": method, "seeds": [0, 1], "failed": 0, "sparsity_mean": 0.9,
        "sparsity_std": 0.001, "test_acc_mean": acc, "test_acc_std": 0.01,
        "flops_mean": flops, "dense_flops": 2.0e6, "weight_decay": 5e-4,
    }  # fmt: skip


SAVED: dict[str, Any] = {
    "digits|0.9": {
        "model": "digits_cnn",
        "epochs": 30,
        "wall_s": 600.0,
        "table": [_row("str", 0.987), _row("gmp", 0.98, 2.4e5)],
        "searches": {
            "str": {
                "reached": True,
                "best": {"budget": {"features.0.conv": 0.4, "fc": 0.3}},
            },
            "str_l1": {"reached": False, "best": None},
        },
    }
}


def test_tables_say_what_each_method_reached() -> None:
    table = method_table("digits|0.9", SAVED["digits|0.9"])
    assert "| str | 2 | 90.00 ± 0.10 | 98.70 ± 1.00 | 200,000 (10.0) | 0.0005 |" in table
    assert "Searches that did not land within ±0.5 pp: str_l1." in table
    budgets = budget_table("digits", SAVED)
    assert "| `features.0.conv` | 288 | 40.0 | 0.0 | = target |" in budgets
    assert "| `features.1.conv` | 18,432 | – |" in budgets  # no learnt value for that layer
    assert budget_table("mnist1d", SAVED) == ""


def test_the_report_draws_one_figure_per_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report(json.loads(json.dumps(SAVED)), tmp_path, redraw_runs=False)
    assert [p.name for p in tmp_path.iterdir()] == ["results_digits.png"]
    assert "digits_cnn" in capsys.readouterr().out
