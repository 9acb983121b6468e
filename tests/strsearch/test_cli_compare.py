"""`strsearch compare`: its options, budget files, and one small real comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from str_core.budgets import write_budget
from strsearch.cli import app

runner = CliRunner()
BASE = ["compare", "--model", "digits_cnn", "--dataset", "digits", "--target", "0.8"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "str,magic"], "methods.1"),
        (["--methods", "gmp,str_to_gmp"], "add 'str' to methods"),
        (["--methods", "budget_gmp"], "comparison.budget"),
        (["--seeds", "0,x"], "--seeds"),
        (["--seeds", "1,1"], "comparison.seeds"),
        (["--budget-column", "STR"], "--budget-column needs --budget-file"),
    ],
)
def test_bad_options_name_the_field(args: list[str], message: str) -> None:
    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_budget_naming_other_layers_is_refused(tmp_path: Path) -> None:
    budget = tmp_path / "budget.csv"
    write_budget(budget, {"conv1": 0.5, "fc": 0.2})
    args = ["--methods", "budget_gmp", "--budget-file", str(budget), "--no-mlflow"]
    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code == 2, result.output
    assert "unknown ['conv1']" in result.output


def test_a_paper_budget_table_needs_the_models_layer_count() -> None:
    table = Path("tests/data/SparsityDistributions_90_ResNet50.csv")
    args = ["--methods", "budget_dnw", "--budget-file", str(table), "--budget-column", "STR"]
    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code == 2, result.output
    assert "54 layer rows but 4" in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_a_small_comparison_prints_its_table(tmp_path: Path) -> None:
    budget = tmp_path / "budget.json"
    # keep the first conv and the classifier dense, as STR learns to
    budget.write_text(
        json.dumps({"features.0.conv": 0, "features.1.conv": 0.8, "features.3.conv": 0.9, "fc": 0})
    )
    args = [
        *BASE, "--methods", "dnw,budget_gmp", "--seeds", "3", "--epochs", "2",
        "--budget-file", str(budget), "--storage", str(tmp_path / "runs"), "--no-mlflow",
    ]  # fmt: skip
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [row["method"] for row in out["table"]] == ["dnw", "budget_gmp"]
    for row in out["table"]:
        assert row["seeds"] == [3] and row["sparsity_mean"] == pytest.approx(0.8, abs=1e-4)
    given = next(t for t in out["trials"] if t["method"] == "budget_gmp")
    # the given budget's dense layers stay dense; the others are scaled to reach 80 % overall
    assert given["budget"]["features.0.conv"] == 0 and given["budget"]["fc"] == 0
    assert given["budget"]["features.3.conv"] > given["budget"]["features.1.conv"]

    again = runner.invoke(app, args)  # the finished comparison is resumed, not run again
    assert again.exit_code == 0, again.output
    assert "budget_gmp" in again.output and "80.00%" in again.output
