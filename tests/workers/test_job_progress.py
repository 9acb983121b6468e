"""JobProgress: trial events aggregated into the job's ``progress`` JSON (docs/api.md)."""

from __future__ import annotations

import json
import threading
from typing import Any

from workers.job_progress import JobProgress, mlflow_run_url, utc_now

TRACKING = {
    "tracking_uri": "http://127.0.0.1:5000/",
    "experiment_id": "3",
    "job_id": "job-1",
    "parent_run_id": "abc",
    "log_models": True,
}


def _config(weight_decay: float, s_init: float = -5.0, **extra: Any) -> dict[str, Any]:
    return {"weight_decay": weight_decay, "s_init": s_init, "method": "str", **extra}


def _epoch(
    progress: JobProgress, trial: str, wd: float, epoch: int, sparsity: float, acc: float
) -> None:
    result = {"epoch": epoch, "sparsity": sparsity, "val_acc": acc, "test_acc": acc - 0.01}
    progress.trial_result(trial, _config(wd), result | {"sparsity/fc": 0.5})


def _progress() -> JobProgress:
    return JobProgress(0.9, 0.01, 6, clock=lambda: "2026-01-01T00:00:00Z")


def test_empty_progress_has_every_field() -> None:
    snap = _progress().snapshot()
    assert snap == {
        "trials_done": 0,
        "trials_running": 0,
        "trials_total": 6,
        "epochs": 0,
        "best": None,
        "trials": [],
        "mlflow_run_url": None,
        "updated_at": "2026-01-01T00:00:00Z",
    }


def test_every_update_raises_the_revision_and_reading_does_not() -> None:
    progress = _progress()
    assert progress.revision == 0
    progress.trial_started("t1", _config(0.01))
    _epoch(progress, "t1", 0.01, 1, 0.5, 0.6)
    progress.snapshot()
    assert progress.revision == 2
    progress.set_mlflow_run_url("http://127.0.0.1:5000/#/experiments/3/runs/abc")
    progress.set_mlflow_run_url("http://127.0.0.1:5000/#/experiments/3/runs/abc")  # no news
    progress.trial_finished("t1", _config(0.01), failed=False)
    progress.complete({"trials": []})
    assert progress.revision == 5


def test_events_aggregate_into_counts_rows_and_best() -> None:
    progress = _progress()
    progress.trial_started("t1", _config(0.01, tracking=TRACKING))
    progress.trial_started("t2", _config(0.02))
    _epoch(progress, "t1", 0.01, 1, 0.5, 0.6)
    _epoch(progress, "t1", 0.01, 2, 0.85, 0.7)
    _epoch(progress, "t2", 0.02, 1, 0.7, 0.5)
    snap = progress.snapshot()
    assert (snap["trials_done"], snap["trials_running"], snap["epochs"]) == (0, 2, 3)
    assert snap["best"] is None  # nothing finished yet
    assert snap["mlflow_run_url"] == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert snap["trials"][0] == {
        "trial_id": "t1",
        "method": "str",
        "seed": None,
        "weight_decay": 0.01,
        "s_init": -5.0,
        "epoch": 2,
        "sparsity": 0.85,
        "val_acc": 0.7,
        "state": "running",
    }

    progress.trial_finished("t1", _config(0.01), failed=False)  # 0.85: below the band
    assert progress.snapshot()["best"]["status"] == "below"
    _epoch(progress, "t2", 0.02, 2, 0.905, 0.65)
    progress.trial_finished("t2", _config(0.02), failed=False)  # landed
    progress.trial_started("t3", _config(0.03))
    progress.trial_finished("t3", _config(0.03), failed=True)
    snap = progress.snapshot()
    assert (snap["trials_done"], snap["trials_running"], snap["epochs"]) == (3, 0, 4)
    assert [t["state"] for t in snap["trials"]] == ["below", "landed", "failed"]
    assert snap["best"] == {
        "trial_id": "t2",
        "method": "str",
        "weight_decay": 0.02,
        "s_init": -5.0,
        "sparsity": 0.905,
        "val_acc": 0.65,
        "test_acc": 0.64,
        "status": "landed",
    }
    json.dumps(snap)  # JSON-ready


def test_a_comparisons_rows_carry_their_method_and_seed() -> None:
    progress = _progress()
    progress.trial_started("g0", {"method": "gmp", "seed": 2, "weight_decay": 5e-4})
    progress.trial_result("g0", {"method": "gmp", "seed": 2, "weight_decay": 5e-4}, {"epoch": 1})
    row = progress.snapshot()["trials"][0]
    assert (row["method"], row["seed"], row["s_init"], row["epoch"]) == ("gmp", 2, None, 1)


def test_best_prefers_accuracy_among_landed_trials() -> None:
    progress = _progress()
    for trial, wd, sparsity, acc in [("a", 0.01, 0.895, 0.8), ("b", 0.02, 0.905, 0.9)]:
        _epoch(progress, trial, wd, 1, sparsity, acc)
        progress.trial_finished(trial, _config(wd), failed=False)
    _epoch(progress, "c", 0.015, 1, 0.93, 0.99)  # more accurate but above the band
    progress.trial_finished("c", _config(0.015), failed=False)
    assert progress.snapshot()["best"]["trial_id"] == "b"


def test_a_restarted_trial_is_not_counted_twice() -> None:
    progress = _progress()
    _epoch(progress, "t1", 0.01, 1, 0.5, 0.6)
    _epoch(progress, "t1", 0.01, 2, 0.6, 0.6)
    progress.trial_started("t1", _config(0.01))  # restored from its checkpoint
    _epoch(progress, "t1", 0.01, 2, 0.6, 0.6)  # the same epoch reported again
    snap = progress.snapshot()
    assert snap["epochs"] == 2
    assert len(snap["trials"]) == 1


def test_resume_keeps_the_trials_of_an_earlier_attempt() -> None:
    first = _progress()
    _epoch(first, "t1", 0.01, 3, 0.905, 0.8)
    first.trial_finished("t1", _config(0.01), failed=False)
    first.trial_started("t2", _config(0.02, tracking=TRACKING))
    _epoch(first, "t2", 0.02, 1, 0.4, 0.3)
    reported = json.loads(json.dumps(first.snapshot()))

    second = _progress()
    second.resume(reported)
    assert second.snapshot()["trials"] == reported["trials"]
    assert second.snapshot()["best"] == reported["best"]
    second.trial_started("t2", _config(0.02))  # the resumed experiment restarts t2
    _epoch(second, "t2", 0.02, 2, 0.6, 0.5)
    second.trial_finished("t2", _config(0.02), failed=False)
    snap = second.snapshot()
    assert (snap["trials_done"], snap["trials_running"], snap["epochs"]) == (2, 0, 5)
    assert snap["best"]["trial_id"] == "t1"
    assert snap["mlflow_run_url"] == reported["mlflow_run_url"]
    second.resume(None)  # nothing to resume from: no change
    assert second.snapshot() == snap


def test_complete_takes_the_final_rows_from_the_result() -> None:
    progress = _progress()
    progress.trial_started("t1", _config(0.01))
    _epoch(progress, "t1", 0.01, 1, 0.5, 0.6)
    trial = {
        "trial_id": "t1",
        "method": "str",
        "seed": None,
        "weight_decay": 0.01,
        "s_init": -5.0,
        "status": "landed",
        "epochs": 3,
        "sparsity": 0.9,
        "val_acc": 0.8,
        "test_acc": 0.79,
        "budget": {"fc": 0.9},
    }
    progress.complete(
        {"trials": [trial], "best": trial, "mlflow_run_url": "http://m/#/experiments/1/runs/r"}
    )
    snap = progress.snapshot()
    assert snap["trials"] == [
        {
            "trial_id": "t1",
            "method": "str",
            "seed": None,
            "weight_decay": 0.01,
            "s_init": -5.0,
            "epoch": 3,
            "sparsity": 0.9,
            "val_acc": 0.8,
            "state": "landed",
        }
    ]
    assert (snap["trials_done"], snap["epochs"]) == (1, 3)
    assert snap["best"] is not None and snap["best"]["test_acc"] == 0.79
    assert snap["mlflow_run_url"] == "http://m/#/experiments/1/runs/r"


def test_non_finite_and_missing_metrics_are_left_out() -> None:
    progress = _progress()
    progress.trial_result("t1", _config(0.01), {"epoch": 1, "sparsity": float("nan")})
    progress.trial_finished("t1", {}, failed=False)
    snap = progress.snapshot()
    assert snap["trials"][0]["sparsity"] is None
    assert snap["trials"][0]["state"] == "failed"  # no usable sparsity
    assert snap["best"] is None
    json.dumps(snap, allow_nan=False)


def test_mlflow_run_url_needs_an_http_server_and_the_ids() -> None:
    assert mlflow_run_url(TRACKING) == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert mlflow_run_url(TRACKING | {"tracking_uri": "file:///tmp/mlruns"}) is None
    assert mlflow_run_url(TRACKING | {"parent_run_id": ""}) is None
    assert utc_now().endswith("Z")


def test_snapshots_are_consistent_while_events_arrive_from_another_thread() -> None:
    progress = JobProgress(0.9, 0.01, 400)

    def feed() -> None:
        for i in range(400):
            progress.trial_started(f"t{i}", _config(0.001 * (i + 1)))
            _epoch(progress, f"t{i}", 0.001 * (i + 1), 1, 0.5, 0.5)
            progress.trial_finished(f"t{i}", _config(0.001 * (i + 1)), failed=False)

    feeder = threading.Thread(target=feed)
    feeder.start()
    while feeder.is_alive():
        snap = progress.snapshot()
        json.dumps(snap)
        assert snap["trials_done"] + snap["trials_running"] == len(snap["trials"])
        assert snap["epochs"] == sum(t["epoch"] for t in snap["trials"])
    feeder.join()
    assert progress.snapshot()["trials_done"] == 400
