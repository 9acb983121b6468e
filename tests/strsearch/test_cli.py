"""The `strsearch` command line, in-process through Typer's runner and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strsearch.cli import app

PAPER_TABLE = Path(__file__).resolve().parents[1] / "data" / "SparsityDistributions_90_ResNet50.csv"
runner = CliRunner()


def test_train_json_out_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--model", "digits_mlp", "--dataset", "digits", "--weight-decay", "1e-2",
            "--s-init", "-3", "--epochs", "2", "--out", str(out), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["model"] == "digits_mlp"
    assert payload["str_config"]["s_init"] == -3.0
    assert len(payload["history"]) == 2
    rows = payload["accounting"]["rows"]
    assert [r["name"] for r in rows] == ["classifier.1", "classifier.3", "classifier.5"]
    assert 0 < payload["final"]["sparsity"] < 1
    assert (out / "last.pt").is_file()
    assert json.loads((out / "results.json").read_text()) == payload
    budget = json.loads((out / "budget.json").read_text())
    assert budget == {r["name"]: r["sparsity"] for r in rows}

    # a longer run resumes from epoch 2 instead of starting over
    more = [*args[:-4], "3", "--out", str(out), "--json", "--resume"]
    result = runner.invoke(app, more)
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout)["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == payload["history"]


def test_train_dense_prints_the_table() -> None:
    result = runner.invoke(
        app, ["train", "--model", "digits_mlp", "--dataset", "digits", "--dense", "--epochs", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "per-layer budget" in result.output
    assert "classifier.5" in result.output
    assert "(dense)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope", "--dataset", "digits"], "unknown model 'nope'"),
        (["--model", "digits_cnn", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["--model", "digits_cnn", "--dataset", "digits", "--granularity", "row"], "granularity"),
        (["--model", "digits_cnn", "--dataset", "digits", "--exclude", "fc2"], "match no prunable"),
        (["--model", "digits_cnn", "--dataset", "cifar10"], "root"),
        (["--model", "digits_cnn", "--dataset", "digits", "--resume"], "--resume needs --out"),
        (["--model", "digits_cnn", "--dataset", "digits", "--lr", "-1"], "lr must be > 0"),
    ],
)
def test_train_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", *args, "--epochs", "1"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_budget_dense_and_paper_table() -> None:
    result = runner.invoke(app, ["budget", "--model", "resnet50", "--json"])
    assert result.exit_code == 0, result.output
    dense = json.loads(result.stdout)
    assert dense["total_params"] == 25_502_912
    assert dense["dense_flops"] == 4_089_284_608
    result = runner.invoke(
        app, ["budget", "--model", "resnet50", "--budget", str(PAPER_TABLE), "--method", "STR"]
    )
    assert result.exit_code == 0, result.output
    assert "90.23%" in result.output
    assert "342.70M" in result.output
    assert "layer1.0.downsample.0" in result.output


def test_budget_round_trips_a_trained_budget(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"classifier.1": 0.5, "classifier.3": 0.9}))
    result = runner.invoke(
        app, ["budget", "--model", "digits_mlp", "--budget", str(tmp_path / "b.json")]
    )
    assert result.exit_code == 2
    assert "classifier.5" in result.output  # the missing layer is named
    (tmp_path / "b.json").write_text(
        json.dumps({"classifier.1": 0.5, "classifier.3": 0.9, "classifier.5": 0.0})
    )
    result = runner.invoke(
        app, ["budget", "--model", "digits_mlp", "--budget", str(tmp_path / "b.json"), "--json"]
    )
    assert result.exit_code == 0, result.output
    acc = json.loads(result.stdout)
    assert acc["total_nonzero"] == 64 * 256 // 2 + 256 * 128 // 10 + 1 + 128 * 10


def test_catalog_commands() -> None:
    models = runner.invoke(app, ["models"])
    assert models.exit_code == 0
    for name in ("digits_cnn", "mnist1d_cnn", "resnet20", "resnet50", "mobilenet_v1"):
        assert name in models.output
    datasets = runner.invoke(app, ["datasets"])
    assert datasets.exit_code == 0
    for name in ("digits", "mnist1d", "cifar10", "imagefolder"):
        assert name in datasets.output


def test_installed_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("strsearch")
    assert exe.is_file(), "the package must be installed (pip install -e .)"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "budget", "models", "datasets"):
        assert command in out.stdout
