"""The trial GC benchmark: one short round of both arms in real Ray trial processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.trial_gc import ARMS, LAMBDAS, main


@pytest.mark.usefixtures("local_ray")
def test_one_round_records_both_arms_in_fresh_trial_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gc.json"
    assert main(["--rounds", "1", "--epochs", "1", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert sorted((r["arm"], r["weight_decay"]) for r in records) == sorted(
        (arm, wd) for arm in ARMS for wd in LAMBDAS
    )
    for r in records:
        assert r["collections"] > 0 and r["gc_seconds"] > 0 and r["seconds"] > 0
        # every trial had a process of its own: only the shipped arm froze its heap
        assert (r["frozen_objects"] > 0) == (r["arm"] == "frozen"), r
    printed = capsys.readouterr().out
    assert "| frozen | 2 |" in printed and "| unfrozen | 2 |" in printed
