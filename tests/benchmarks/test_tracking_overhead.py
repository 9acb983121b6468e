"""Smoke tests of the tracking-overhead benchmark: real trials, a real MLflow server, no timing
assertions (the numbers are the benchmark's output, not a property of the code)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchmarks.tracking_overhead import Job, main, run_benchmark, run_trial, trial_spec
from workers.mlflow_server import LocalServer
from workers.tracking import MODEL_URI_TAG
from workers.tracking.common import using_tracking_uri

REPO = Path(__file__).resolve().parents[2]


def test_the_trial_gets_the_threads_asked_for() -> None:
    assert trial_spec("digits").resources.cpus_per_trial == 1  # as measured before 2026-12-06
    spec = trial_spec("mnist1d", 3, threads=2)
    assert spec.resources.cpus_per_trial == 2 and spec.training.epochs == 3


def test_run_benchmark_rejects_unknown_names_and_a_missing_baseline() -> None:
    for kwargs in (
        {"setups": ["cifar10"]},
        {"arms": ["on"]},
        {"arms": ["off", "verbose"]},
        {"repeats": 0},
    ):
        with pytest.raises(ValueError, match="including 'off'"):
            run_benchmark(**kwargs)


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# mlflow.pyfunc, imported by the first log_model call, warns about one of its own type hints
IMPORT_WARNING = "ignore:.*Any type hint is inferred as AnyType:UserWarning"


@pytest.mark.slow
@pytest.mark.filterwarnings(IMPORT_WARNING)
def test_quick_run_trains_both_arms_against_its_own_server_and_stops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    out = tmp_path / "result.json"
    assert main(["--quick", "--threads", "2", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    off, on = payload["summaries"]
    assert (off["setup"], off["arm"], on["arm"]) == ("digits", "off", "on")
    assert off["epochs"] == 2 and off["repeats"] == on["repeats"] == 1
    assert on["same_result"]  # tracking did not change training
    assert all(on["phases"][p] > 0 for p in ("start", "plots", "upload", "end", "models"))
    assert [t["arm"] for t in payload["trials"]] == ["off", "on"]
    assert payload["trials"][1]["run_id"] and payload["trials"][0]["run_id"] is None
    meta = payload["meta"]
    assert meta["server"] == "started by the benchmark" and meta["machine_after"]["loadavg"]
    assert not _answers(meta["tracking_uri"])  # stopped
    assert os.environ.get("MLFLOW_TRACKING_URI") == uri_before  # the session's server again
    table = capsys.readouterr().out
    assert "| digits | 2 | on |" in table and "digits/on: charged" in table
    assert on["thread_cpu"] > 0 and on["server_cpu"] >= 0  # the server it started was found


@pytest.mark.slow
@pytest.mark.filterwarnings(IMPORT_WARNING)
def test_arms_track_what_they_say(mlflow_server: LocalServer) -> None:
    job = Job.create(mlflow_server.url, experiment=f"test-overhead-{time.time_ns()}")
    spec = trial_spec("digits", epochs=1)
    trackers = {}
    with using_tracking_uri():
        for arm in ("off", "on", "no-models"):
            seconds, trackers[arm], result = run_trial(spec, arm, job, f"t-{arm}")
            assert seconds > 0 and result.final.epoch == 1
    on, bare = trackers["on"], trackers["no-models"]
    assert trackers["off"] is None and on is not None and bare is not None
    assert on.seconds["models"] > 0 and bare.seconds["models"] == 0
    assert all(on.seconds[p] > 0 for p in ("start", "plots", "upload", "end"))
    assert on.figure_seconds > 0 and bare.figure_seconds > 0  # drawn on the sender thread
    # the sender thread opened the run and sent the params; the server's CPU was read
    assert job.server_pids and on.thread_cpu > 0 and on.server_cpu >= 0
    runs = {arm: job.client.get_run(t.run_id) for arm, t in (("on", on), ("no-models", bare))}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert all(
        len(job.client.get_metric_history(r.info.run_id, "sparsity")) == 1 for r in runs.values()
    )
    outputs = {arm: r.outputs.model_outputs if r.outputs else [] for arm, r in runs.items()}
    assert len(outputs["on"]) == 2 and outputs["no-models"] == []
    assert (
        MODEL_URI_TAG in runs["on"].data.tags and MODEL_URI_TAG not in runs["no-models"].data.tags
    )
