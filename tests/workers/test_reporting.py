"""The trial reporters' shared parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from str_core.train import Callback, Trainer
from workers.reporting import EpochReporter, trial_callbacks


class _Reporter(EpochReporter):
    def send(self, trainer: Trainer, report: dict[str, Any]) -> None:
        raise AssertionError("not called here")


def test_the_reporter_comes_after_every_other_callback(tmp_path: Path) -> None:
    reporter = _Reporter(tmp_path, {})
    pruner, tracker = Callback(), Callback()
    assert trial_callbacks(reporter, pruner, tracker) == [pruner, tracker, reporter]
    assert trial_callbacks(reporter) == [reporter]
