"""The upload benchmark: one round of both arms against its own proxying server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.artifact_upload import ARMS, main


@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
def test_one_round_times_both_arms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "upload.json"
    assert main(["--rounds", "1", "--json", str(out)]) == 0
    seconds = json.loads(out.read_text())
    assert set(seconds) == set(ARMS)
    assert all(len(values) == 1 and values[0] > 0 for values in seconds.values())
    printed = capsys.readouterr().out
    assert "| sequential | 1 |" in printed and "| concurrent | 1 |" in printed
