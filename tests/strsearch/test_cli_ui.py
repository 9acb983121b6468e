"""`strsearch ui`: the configured tracking server, or the embedded one started and stopped."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strsearch.cli import app

runner = CliRunner()


def test_prints_the_configured_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    result = runner.invoke(app, ["ui"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "http://mlflow.example:5000"


def test_starts_reuses_and_stops_the_embedded_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    first = runner.invoke(app, ["ui", "--root", str(tmp_path)])
    assert first.exit_code == 0, first.output
    url = first.stdout.strip()
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        assert response.read() == b"OK"
    again = runner.invoke(app, ["ui", "--root", str(tmp_path)])
    assert again.stdout.strip() == url
    stopped = runner.invoke(app, ["ui", "--root", str(tmp_path), "--stop"])
    assert stopped.stdout.strip() == "stopped"
    assert not (tmp_path / "server.json").exists()
    nothing = runner.invoke(app, ["ui", "--root", str(tmp_path), "--stop"])
    assert "no embedded server" in nothing.stdout
