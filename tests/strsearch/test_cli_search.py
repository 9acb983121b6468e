"""`strsearch search`: option handling, and one small real search through the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strsearch.cli import app

runner = CliRunner()
BASE = ["search", "--model", "digits_cnn", "--dataset", "digits"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "1.5"], "target_sparsity"),
        (["--target", "0.9", "--lambda-min", "0.1", "--lambda-max", "0.01"], "lambda_min"),
        (["--target", "0.9", "--max-trials", "0"], "search.max_trials"),
        (["--target", "0.9", "--epochs", "0"], "training.epochs"),
        (["--target", "0.9", "--cpus-per-trial", "0"], "resources.cpus_per_trial"),
    ],
)
def test_bad_options_name_the_field(args: list[str], message: str) -> None:
    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code == 2, result.output
    assert "invalid search spec" in result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_names_and_spec_file_errors(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["search", "--model", "nope", "--dataset", "digits", "--target", "0.9"]
    )
    assert result.exit_code == 2
    assert "unknown model 'nope'" in result.output
    bad = tmp_path / "spec.json"
    bad.write_text(json.dumps({"training": {"epoch": 3}}))
    result = runner.invoke(app, [*BASE, "--target", "0.9", "--spec", str(bad)])
    assert result.exit_code == 2
    assert "training.epoch" in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_search_json_from_a_spec_file(tmp_path: Path) -> None:
    spec_file = tmp_path / "job.json"
    spec_file.write_text(
        json.dumps({"search": {"lambda_min": 2e-3, "lambda_max": 3e-2}, "training": {"lr": 0.1}})
    )
    args = [
        *BASE, "--target", "0.6", "--tolerance", "0.05", "--epochs", "5", "--max-trials", "6",
        "--spec", str(spec_file), "--storage", str(tmp_path / "runs"), "--json",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["reached"], payload["trials"]
    assert payload["best"]["status"] == "landed"
    assert abs(payload["best"]["sparsity"] - 0.6) <= 0.05
    assert payload["total_epochs"] == 5 * len(payload["trials"])
    assert all(2e-4 <= t["weight_decay"] <= 0.3 for t in payload["trials"])
    assert Path(payload["experiment_path"]).is_dir()
    # recorded in the session's MLflow server (MLFLOW_TRACKING_URI), parent run linked
    assert payload["mlflow_run_url"].startswith(os.environ["MLFLOW_TRACKING_URI"])
