"""The client commands (`submit`, `jobs`, `watch`, `cancel`, `result`) against a real API process.

One API (``python -m service`` on a SQLite file) serves the module. Jobs are finished the way an
agent finishes them: over HTTP with a worker token (claim, heartbeat with progress, finish with a
result built by ``workers.result``), so the commands read exactly what a real agent leaves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from strsearch.cli import app
from strsearch.client import Client
from tests.service.live_api import LiveApi, start_api
from workers.result import SearchResult, TrialSummary

runner = CliRunner()
SPEC = ["--model", "digits_cnn", "--dataset", "digits", "--target", "0.9"]
MLFLOW_RUN = "http://127.0.0.1:5000/#/experiments/1/runs/0123456789abcdef"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    tmp = tmp_path_factory.mktemp("api")
    live = start_api(f"sqlite:///{tmp / 'service.db'}", tmp)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def alice(api: LiveApi) -> str:
    return api.token("alice")


def cli(api: LiveApi, token: str, *args: str) -> Any:
    """Run a command in-process against ``api`` with ``token``."""
    return runner.invoke(app, [*args, "--server", api.url, "--token", token])


def submit(api: LiveApi, token: str, *extra: str) -> str:
    result = cli(api, token, "submit", *SPEC, *extra)
    assert result.exit_code == 0, result.output
    return str(result.stdout.strip())


def claim(api: LiveApi, job_id: str) -> Any:
    """Lease ``job_id`` as an agent (other queued jobs are cancelled first: claims take the
    oldest)."""
    with api.api_client(api.admin_token) as admin:
        for job in admin.jobs(["queued"], limit=200)["items"]:
            if job["id"] != job_id:
                admin.cancel(job["id"])
    with api.api_client(api.worker_token) as worker:
        lease = worker.claim("test-agent")
    assert lease is not None
    assert lease.job["id"] == job_id
    return lease


def trial(trial_id: str, weight_decay: float, sparsity: float, val_acc: float) -> TrialSummary:
    metrics = {
        "epoch": 3, "sparsity": sparsity, "val_acc": val_acc, "test_acc": val_acc - 0.01,
        "flops": 2.0e5 * (1 - sparsity), "dense_flops": 2.0e5,
        "sparsity/features.0": sparsity - 0.2, "sparsity/classifier.1": sparsity + 0.05,
        "threshold/features.0": 0.012, "threshold/classifier.1": 0.034,
    }  # fmt: skip
    return TrialSummary.from_metrics(
        trial_id, {"weight_decay": weight_decay, "s_init": -5.0}, metrics,
        target=0.9, tolerance=0.005,
    )  # fmt: skip


def search_result() -> dict[str, Any]:
    """What an agent reports for a landed search (``SearchResult.to_dict()`` plus the links)."""
    trials = [trial("t1", 0.002, 0.71, 0.97), trial("t2", 0.0081, 0.902, 0.955)]
    result = SearchResult.from_trials(0.9, 0.005, trials, "/storage/job/experiment")
    return result.to_dict() | {
        "mlflow_run_url": MLFLOW_RUN,
        "registered_model": "strsearch-digits_cnn-digits-s90/1",
    }


PROGRESS = {
    "trials_done": 1, "trials_running": 1, "trials_total": 2, "epochs": 5,
    "best": {"trial_id": "t1", "weight_decay": 0.002, "s_init": -5.0, "sparsity": 0.71,
             "val_acc": 0.97, "test_acc": 0.96, "status": "below"},
    "trials": [
        {"trial_id": "t1", "weight_decay": 0.002, "s_init": -5.0, "epoch": 3,
         "sparsity": 0.71, "val_acc": 0.97, "state": "below"},
        {"trial_id": "t2", "weight_decay": 0.0081, "s_init": -5.0, "epoch": 2,
         "sparsity": 0.85, "val_acc": 0.93, "state": "running"},
    ],
    "mlflow_run_url": MLFLOW_RUN,
}  # fmt: skip


def test_submit_queues_the_job_it_describes(api: LiveApi, alice: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "job.json"
    spec_file.write_text(json.dumps({"training": {"lr": 0.05, "epochs": 7}, "tolerance": 0.01}))
    job_id = submit(api, alice, "--epochs", "3", "--s-init", "-4", "--s-init", "-6",
                    "--spec", str(spec_file))  # fmt: skip
    with api.api_client(alice) as client:
        job = client.job(job_id)
    assert job["state"] == "queued"
    assert job["owner"] == "alice"
    spec = job["spec"]
    assert (spec["model"], spec["dataset"], spec["target_sparsity"]) == (
        "digits_cnn",
        "digits",
        0.9,
    )
    assert spec["training"]["epochs"] == 3  # the option overrides the file
    assert spec["training"]["lr"] == 0.05  # the file's other fields stay
    assert spec["tolerance"] == 0.01
    assert spec["search"]["s_init"] == [-4.0, -6.0]

    as_json = cli(api, alice, "submit", *SPEC, "--json")
    assert as_json.exit_code == 0, as_json.output
    job = json.loads(as_json.stdout)
    assert job["state"] == "queued"
    assert job["spec"]["search"]["max_trials"] == 12  # the service filled in the defaults


def test_jobs_lists_newest_first_and_filters_by_state(api: LiveApi, alice: str) -> None:
    bob = api.token("bob")
    first, second = submit(api, bob), submit(api, bob)
    listed = cli(api, bob, "jobs", "--json")
    assert listed.exit_code == 0, listed.output
    page = json.loads(listed.stdout)
    assert [job["id"] for job in page["items"]] == [second, first]  # only bob's own jobs
    table = cli(api, bob, "jobs")
    assert table.exit_code == 0, table.output
    assert first in table.stdout
    assert second in table.stdout
    assert "digits_cnn/digits" in table.stdout

    cancelled = cli(api, bob, "cancel", first)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.stdout
    only = json.loads(cli(api, bob, "jobs", "--json", "--state", "cancelled").stdout)
    assert [job["id"] for job in only["items"]] == [first]
    limited = cli(api, bob, "jobs", "--limit", "1")
    assert second in limited.stdout
    assert first not in limited.stdout
    assert "1 of 2 jobs" in limited.stdout


def test_cancel_a_running_job_asks_its_agent(api: LiveApi, alice: str) -> None:
    job_id = submit(api, alice)
    lease = claim(api, job_id)
    answer = cli(api, alice, "cancel", job_id)
    assert answer.exit_code == 0, answer.output
    assert "cancel requested" in answer.stdout
    with api.api_client(api.worker_token) as worker:
        assert worker.heartbeat(job_id, lease.lease_id)["cancel"] is True
        worker.finish(job_id, lease.lease_id, "cancelled", error="cancelled by the user")
    watched = cli(api, alice, "watch", job_id)
    assert watched.exit_code == 1, watched.output
    assert "job cancelled" in watched.output
    again = cli(api, alice, "cancel", job_id)  # a finished job cannot be cancelled
    assert again.exit_code == 2
    assert "409" in again.output
    assert "cancelled" in again.output


def test_watch_follows_a_job_to_its_result(api: LiveApi, alice: str) -> None:
    job_id = submit(api, alice, "--max-trials", "2")
    lease = claim(api, job_id)
    with api.api_client(api.worker_token) as worker:
        worker.heartbeat(job_id, lease.lease_id, PROGRESS)
        # a real process polling while the job runs, then finishes
        watcher = subprocess.Popen(
            [sys.executable, "-m", "strsearch.cli", "watch", job_id, "--interval", "0.2",
             "--server", api.url, "--token", alice],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(2.0)  # let it poll the running job a few times
        worker.finish(job_id, lease.lease_id, "succeeded", result=search_result())
    output, _ = watcher.communicate(timeout=60)
    text = output.decode()
    assert watcher.returncode == 0, text
    assert "digits_cnn on digits" in text
    assert "0.0081" in text  # the trials table
    assert "landed" in text
    assert "features.0" in text  # the per-layer budget of the best
    assert "test acc 94.50%" in text
    assert MLFLOW_RUN in text
    assert "strsearch-digits_cnn-digits-s90/1" in text


def test_result_shows_the_best_trial_and_links(api: LiveApi, alice: str) -> None:
    job_id = submit(api, alice)
    pending = cli(api, alice, "result", job_id)
    assert pending.exit_code == 1
    assert "no result yet" in pending.output
    lease = claim(api, job_id)
    expected = search_result()
    with api.api_client(api.worker_token) as worker:
        worker.finish(job_id, lease.lease_id, "succeeded", result=expected)

    shown = cli(api, alice, "result", job_id)
    assert shown.exit_code == 0, shown.output
    for text in ("per-layer budget", "features.0", "70.20%", "classifier.1", "0.034",
                 "λ=0.0081", "sparsity 90.20%", "val acc 95.50%", MLFLOW_RUN,
                 "registered model: strsearch-digits_cnn-digits-s90/1"):  # fmt: skip
        assert text in shown.stdout, text
    as_json = cli(api, alice, "result", job_id, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == expected


def test_failed_job_watch_and_result_say_why(api: LiveApi, alice: str) -> None:
    job_id = submit(api, alice)
    lease = claim(api, job_id)
    with api.api_client(api.worker_token) as worker:
        worker.finish(job_id, lease.lease_id, "failed", error="CUDA out of memory")
    for command in ("watch", "result"):
        shown = cli(api, alice, command, job_id)
        assert shown.exit_code == 1, shown.output
        assert "job failed" in shown.output
        assert "CUDA out of memory" in shown.output


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (["--model", "nope", "--dataset", "digits", "--target", "0.9"], "model", "unknown model"),
        ([*SPEC[:4], "--target", "1.5"], "target_sparsity", "less than 1"),
        ([*SPEC, "--lambda-min", "0.1", "--lambda-max", "0.01"], "search.lambda_min", "smaller"),
        ([*SPEC, "--max-trials", "1000"], "search.max_trials", ""),
        (["--dataset", "digits", "--target", "0.9"], "model", "Field required"),
    ],
)
def test_submit_errors_name_the_field_and_exit_2(
    api: LiveApi, alice: str, args: list[str], field: str, message: str
) -> None:
    result = cli(api, alice, "submit", *args)
    assert result.exit_code == 2, result.output
    assert "error: HTTP 422" in result.output
    assert f"{field}:" in result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_auth_and_connection_errors(api: LiveApi, alice: str, tmp_path: Path) -> None:
    unknown = cli(api, "strs_not-a-token", "jobs")
    assert unknown.exit_code == 2
    assert "401" in unknown.output
    missing = cli(api, alice, "result", "0" * 32)
    assert missing.exit_code == 2
    assert "404" in missing.output

    # no --token: the token file (what `strsearch serve` writes) is used
    token_file = tmp_path / "token"
    token_file.write_text(alice + "\n")
    from_file = runner.invoke(
        app, ["jobs", "--json", "--server", api.url, "--token-file", str(token_file)]
    )
    assert from_file.exit_code == 0, from_file.output
    absent = runner.invoke(
        app, ["jobs", "--server", api.url, "--token-file", str(tmp_path / "none")]
    )
    assert absent.exit_code == 2
    assert "401" in absent.output

    with Client(api.url) as probe:
        assert probe.health()
    nowhere = runner.invoke(app, ["jobs", "--server", "http://127.0.0.1:9", "--token", alice])
    assert nowhere.exit_code == 1
    assert "cannot reach the service at http://127.0.0.1:9" in nowhere.output
    assert "Traceback" not in nowhere.output
