"""JobProcess: a job's search in a child process (real spawned children, no service).

Whole searches through the child (result, interruption, resume) are covered with a real service
in test_agent.py; these tests cover what needs no training.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest

from workers.job_process import JobProcess, QueueListener, describe, job_storage

SPEC: dict[str, Any] = {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.8}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        self.events.append(("started", trial_id, config))

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        self.events.append(("result", trial_id, config, result))

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        self.events.append(("finished", trial_id, config, failed))


def test_describe_names_the_exception_type() -> None:
    assert describe(KeyError("unknown model 'x'")) == "KeyError: unknown model 'x'"
    assert describe(ValueError("bad")) == "ValueError: bad"


def test_each_job_has_its_own_storage(tmp_path: Path) -> None:
    assert job_storage(tmp_path, "j1") == str(tmp_path.resolve() / "j1")
    assert job_storage("s3://bucket/runs/", "j1") == "s3://bucket/runs/j1"


def test_queue_listener_sends_small_plain_events() -> None:
    events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    listener = QueueListener(events)
    tracking = {"tracking_uri": "http://m", "experiment_id": "1", "parent_run_id": "r"}
    config = {"spec": {"model": "digits_cnn"}, "weight_decay": 0.01, "s_init": -5.0}
    listener.trial_started("t1", config | {"tracking": tracking})
    listener.trial_result("t1", config, {"epoch": 1, "sparsity": 0.5, "sparsity/fc": 0.4})
    listener.trial_finished("t1", config, failed=False)
    plain = {"weight_decay": 0.01, "s_init": -5.0}
    assert events.get_nowait() == ("trial_started", "t1", plain | {"tracking": tracking})
    assert events.get_nowait() == ("trial_result", "t1", plain, {"epoch": 1, "sparsity": 0.5})
    assert events.get_nowait() == ("trial_finished", "t1", plain, False)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"model": "nope"}, "KeyError: unknown model 'nope'"),
        ({"target_sparsity": 2.0}, "invalid spec: target_sparsity"),
    ],
)
def test_a_spec_that_cannot_run_here_is_reported_without_searching(
    tmp_path: Path, patch: dict[str, Any], message: str
) -> None:
    recorder = Recorder()
    process = JobProcess("job-1", SPEC | patch, tmp_path, recorder)
    process.start()
    try:
        assert process.wait(timeout=120)
        outcome = process.outcome()
    finally:
        process.close()
    assert outcome.kind == "invalid"
    assert outcome.error is not None and outcome.error.startswith(message), outcome.error
    assert recorder.events == []
    assert not (tmp_path / "job-1").exists()


def test_a_killed_search_process_is_reported_as_crashed(tmp_path: Path) -> None:
    process = JobProcess("job-2", SPEC, tmp_path, Recorder())
    process.start()
    process.kill()
    assert not process.alive()
    outcome = process.outcome()
    process.close()
    assert outcome.kind == "crashed"
    assert outcome.error == "the search process ended with exit code -9"
