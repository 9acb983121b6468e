"""The start-up heap of a training process, frozen once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FIRST_TRIALS = """
import gc
import workers.trainable  # what a trial process has imported when its trial starts
from workers.heap import freeze_startup_heap
assert gc.get_freeze_count() == 0
assert freeze_startup_heap() is True, "the first trial of a process freezes"
frozen = gc.get_freeze_count()
assert frozen > 100_000, frozen  # torch, Ray and MLflow are imported by then
garbage = [[]]
garbage[0].append(garbage)  # what a first trial leaves behind
del garbage
assert freeze_startup_heap() is False, "a later trial does not freeze again"
assert gc.get_freeze_count() == frozen
assert gc.collect() > 0, "what came after the freeze is still collected"
"""


def test_the_first_trial_of_a_process_freezes_the_start_up_heap_once() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FIRST_TRIALS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
