"""The pieces of deploy/batch.py that need no running topology: the jobs and the fault moments."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.batch import FAULTS, BatchReport, FaultPlan, JobOutcome, job_specs, running_trials
from strsearch.spec import SearchSpec


def test_job_specs_are_valid_jobs_of_one_trial_at_a_time() -> None:
    specs = job_specs(5, epochs=3, max_trials=2)
    parsed = [SearchSpec.parse(spec) for spec in specs]
    assert [p.target_sparsity for p in parsed] == [0.8, 0.85, 0.9, 0.95, 0.8]
    assert {(p.training.epochs, p.search.max_trials, p.search.parallel_trials) for p in parsed} == {
        (3, 2, 1)
    }
    assert len({p.search.seed for p in parsed}) == 5  # no two jobs are the same search
    assert all(p.search.early_stopping for p in parsed)  # the default, as users run searches
    whole = [SearchSpec.parse(s) for s in job_specs(2, 3, 2, early_stopping=False)]
    assert not any(p.search.early_stopping for p in whole)  # every trial trains its epochs


def _job(job_id: str, state: str, *trials: tuple[str, int]) -> dict[str, Any]:
    rows = [{"trial_id": t, "state": s, "epoch": e} for t, (s, e) in enumerate(trials)]
    return {
        "id": job_id,
        "state": state,
        "spec": {"training": {"epochs": 8}},
        "progress": {"trials": rows} if trials else None,
    }


def test_running_trials_have_a_checkpoint_and_half_their_epochs_to_go() -> None:
    jobs = [
        _job("a", "running", ("running", 1), ("landed", 4)),
        _job("b", "running", ("running", 0)),  # no epoch finished: no checkpoint yet
        _job("c", "queued"),
        _job("d", "succeeded", ("running", 3)),  # a stale row of a finished job
        _job("e", "running", ("running", 4), ("running", 5)),  # 5 of 8: may end before a fault
    ]
    assert running_trials(jobs) == [
        ("a", {"trial_id": 0, "state": "running", "epoch": 1}),
        ("e", {"trial_id": 0, "state": "running", "epoch": 4}),
    ]


def test_a_fault_plan_refuses_unknown_faults() -> None:
    with pytest.raises(ValueError, match="unknown faults \\['disk'\\]"):
        FaultPlan(None, [*FAULTS, "disk"], 0.0)  # type: ignore[arg-type]


def test_exactly_once_needs_a_final_state_and_one_final_transition() -> None:
    def report(*jobs: tuple[str, int]) -> BatchReport:
        outcomes = [JobOutcome(str(i), s, 1, n, 1, None, []) for i, (s, n) in enumerate(jobs)]
        return BatchReport(wall_s=1.0, jobs=outcomes, faults=[])

    assert report(("succeeded", 1), ("unreached", 1)).exactly_once
    assert not report(("succeeded", 1), ("running", 0)).exactly_once
    assert not report(("succeeded", 2)).exactly_once
    assert report(("failed", 1)).to_json()["exactly_once"] is True
