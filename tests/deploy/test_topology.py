"""The production topology, for real, on this machine: ``python -m deploy.topology``.

PostgreSQL-backed API, MLflow server on PostgreSQL, a Ray head and a Ray worker node (one CPU
each), two agents, all separate processes on loopback. Three jobs are submitted concurrently and
three faults injected while they run: the worker node is killed during a trial, an agent running
a job is killed, the API is killed and started again. The script's own entry point runs it; the
test reads the JSON report it writes and checks it against what production promises.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.batch import FAULTS
from deploy.topology import main
from tests.service.conftest import POSTGRES_ADMIN_URL


@pytest.mark.slow
def test_jobs_survive_a_lost_node_a_killed_agent_and_an_api_restart(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    status = main(
        [
            "--jobs", "3", "--nodes", "2", "--agents", "2", "--epochs", "12", "--max-trials", "2",
            "--batch-size", "16", "--no-early-stopping",
            "--faults", ",".join(FAULTS), "--postgres", POSTGRES_ADMIN_URL,
            "--root", str(tmp_path / "topology"), "--json", str(report_path),
        ]
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert status == 0, report

    jobs = {job["id"]: job for job in report["jobs"]}
    assert len(jobs) == 3
    # every job reached a final state exactly once, none failed for the faults
    assert report["exactly_once"] is True
    assert all(job["final_transitions"] == 1 for job in jobs.values()), jobs
    assert {job["state"] for job in jobs.values()} <= {"succeeded", "unreached"}, jobs
    assert all(job["trials"] >= 1 for job in jobs.values()), jobs
    # no trial ran twice, whatever was interrupted (a resumed search searches each λ once)
    for job in jobs.values():
        assert len(set(job["weight_decays"])) == len(job["weight_decays"]) == job["trials"], job

    faults = {fault["kind"]: fault for fault in report["faults"]}
    assert list(faults) == list(FAULTS), report["faults"]

    # the trial on the lost node went on from its checkpoint on another node, not from epoch 1
    moved = faults["worker-node"]["detail"]["moved_trials"]
    assert moved, faults["worker-node"]
    assert all(trial["resumed_at_epoch"] > 1 for trial in moved), moved

    # the killed agent's job was claimed again (a second attempt) and finished once
    orphan = jobs[faults["agent"]["detail"]["job"]]
    assert orphan["attempts"] == 2, orphan
    assert orphan["final_transitions"] == 1
