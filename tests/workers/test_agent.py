"""The agent against a real API process (SQLite), with real searches (digits_cnn on digits).

Each test starts its own API (``python -m service``, short leases) and real ``strsearch agent``
processes; the agents' searches join the session's Ray head and are recorded on the session's
MLflow server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from strsearch.cli.agent import agent as agent_command
from strsearch.client import Client
from tests.service.live_api import LiveApi, start_api
from tests.workers.agent_processes import (
    AgentProcess,
    job_events,
    process_tree,
    survivors,
    wait_for,
)
from workers.agent import Agent, compact_result, default_name
from workers.job_progress import JobProgress
from workers.tracking import JOB_TAG, KIND_TAG, TRIAL_TAG

FINAL = ("succeeded", "unreached", "failed", "cancelled")
BRACKET = {"lambda_min": 1e-3, "lambda_max": 5e-2}
# two trials of two epochs at once: a whole job in a few seconds of training
QUICK: dict[str, Any] = {
    "model": "digits_cnn",
    "dataset": "digits",
    "target_sparsity": 0.35,
    "tolerance": 0.05,
    "training": {"epochs": 2},
    "search": {"max_trials": 2, "parallel_trials": 2, **BRACKET},
}
RAY_NODE_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
# one trial at a time, small batches: long enough to be interrupted between epochs
SLOW: dict[str, Any] = QUICK | {
    "training": {"epochs": 3, "batch_size": 8},
    "search": {"max_trials": 2, "parallel_trials": 1, **BRACKET},
}


def _final(user: Client, job_id: str, *agents: AgentProcess) -> dict[str, Any]:
    return wait_for(
        lambda: (job := user.job(job_id))["state"] in FINAL and job,
        f"job {job_id} to finish",
        agents=agents,
    )


def _trained(user: Client, job_id: str, *agents: AgentProcess) -> dict[str, Any]:
    """The job's progress once a trial has reported an epoch (and the job still runs)."""

    def check() -> dict[str, Any] | None:
        job = user.job(job_id)
        assert job["state"] in ("queued", "running"), job
        progress = job["progress"]
        trained = progress and any(t["epoch"] >= 1 for t in progress["trials"])
        return progress if trained else None

    return wait_for(check, f"a trial of job {job_id} to report an epoch", agents=agents)


def _wait_saved(storage: Path, agent: AgentProcess) -> None:
    """Wait until Tune saved the job's experiment (what a resumed search restores)."""
    wait_for(
        lambda: list(storage.glob("*/experiment_state*")),
        "Tune to save the experiment",
        agents=(agent,),
    )


def _mlflow_runs(job_id: str) -> tuple[Any, list[Any]]:
    """The job's parent run and its trial runs on the session's MLflow server."""
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{JOB_TAG}` = '{job_id}'"
    )
    parents = [r for r in runs if r.data.tags[KIND_TAG] == "job"]
    assert len(parents) == 1, parents
    return parents[0], [r for r in runs if r.data.tags[KIND_TAG] == "trial"]


def _wait_gone(tree: set[int], *agents: AgentProcess, ignore: tuple[str, ...] = ()) -> None:
    """Wait until every process of ``tree`` has ended (but those named in ``ignore``)."""
    wait_for(
        lambda: not survivors(tree, ignore=ignore),
        lambda: f"the search's processes to end: {survivors(tree, ignore=ignore)}",
        timeout=60,
        agents=agents,
    )


def _assert_resumed(job: dict[str, Any], reported: dict[str, Any]) -> None:
    """The job's search continued the experiment an earlier attempt reported as ``reported``
    (its trials are in the result) and ran no trial twice (no λ twice, one MLflow run per
    trial, no epoch logged twice)."""
    trials = job["result"]["trials"]
    ids = [t["trial_id"] for t in trials]
    assert {t["trial_id"] for t in reported["trials"]} <= set(ids), (reported, ids)
    assert len(ids) == len(set(ids)) <= SLOW["search"]["max_trials"]
    lambdas = [t["weight_decay"] for t in trials]
    assert len(lambdas) == len(set(lambdas)), lambdas
    epochs = SLOW["training"]["epochs"]
    assert all(t["epochs"] == epochs for t in trials), trials
    parent, runs = _mlflow_runs(job["id"])
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags[TRIAL_TAG] for r in runs) == sorted(ids)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "sparsity")]
        assert steps == list(range(1, epochs + 1)), (run.data.tags[TRIAL_TAG], steps)


def _transitions(events: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(e["from_state"], e["to_state"]) for e in events]


# --------------------------------------------------------------------------------- no service


def test_compact_result_drops_per_layer_tables_of_trials_only() -> None:
    trial = {"trial_id": "t", "budget": {"fc": 0.9}, "thresholds": {"fc": 0.1}, "sparsity": 0.9}
    result = {"reached": True, "best": trial, "trials": [trial, trial]}
    compact = compact_result(result)
    assert compact["trials"] == [{"trial_id": "t", "sparsity": 0.9}] * 2
    assert compact["best"] == trial
    assert result["trials"][0]["budget"] == {"fc": 0.9}  # the original is left alone
    assert default_name().endswith(f"-{os.getpid()}")


def test_the_agent_loads_neither_torch_nor_ray_nor_mlflow() -> None:
    # its searches run in processes of their own: the agent itself stays light and starts fast
    probe = (
        "import json, sys; import strsearch.cli.agent, workers.agent; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'ray', 'mlflow', 'str_core'})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []


def test_the_command_needs_a_worker_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRSEARCH_TOKEN", raising=False)
    app = typer.Typer()
    app.command()(agent_command)
    result = CliRunner().invoke(app, ["--server", "http://127.0.0.1:9", "--once"])
    assert result.exit_code == 2
    assert "worker token" in result.output


def test_the_command_says_when_the_service_cannot_be_reached() -> None:
    app = typer.Typer()
    app.command()(agent_command)
    result = CliRunner().invoke(app, ["--server", "http://127.0.0.1:9", "--token", "x", "--once"])
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9" in result.output


# ------------------------------------------------------------------------------ with service


@pytest.mark.slow
def test_an_agent_runs_a_job_to_its_end(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
) -> None:
    # a long lease: the lease alone would beat every 20 s, after this job's end; the progress
    # seen while it runs comes from the beats its trials' reports trigger
    api = make_api(60)
    user = users(api)
    job_id = user.submit(QUICK)["id"]
    agent = agents(api, "solo", "--once", "--progress-seconds", "0.5")

    running_progress: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        job = user.job(job_id)
        if job["state"] == "running" and job["progress"]:
            running_progress.append(job["progress"])
        return job if job["state"] in FINAL else None

    job = wait_for(finished, "the job to finish", agents=(agent,))
    assert agent.wait() == 0, agent.log()  # --once: exits after its job

    assert job["state"] in ("succeeded", "unreached"), (job, agent.log())
    result = job["result"]
    assert (job["state"] == "succeeded") == result["reached"]
    assert 1 <= len(result["trials"]) <= QUICK["search"]["max_trials"]
    assert job["attempts"] == 1
    assert _transitions(job_events(api.database_url, job_id)) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", job["state"]),
    ]
    # progress came while the job ran, and the last one matches the result
    assert any(p["epochs"] > 0 for p in running_progress), running_progress
    assert all(p["trials_total"] == QUICK["search"]["max_trials"] for p in running_progress)
    progress = job["progress"]
    assert progress["trials_done"] == len(result["trials"])
    assert progress["trials_running"] == 0
    assert progress["epochs"] == result["total_epochs"]
    assert {t["trial_id"] for t in progress["trials"]} == {t["trial_id"] for t in result["trials"]}
    assert progress["best"]["trial_id"] == result["best"]["trial_id"]
    # the job's MLflow run is linked from the progress and the result
    parent, trials = _mlflow_runs(job_id)
    assert result["mlflow_run_url"].endswith(f"/runs/{parent.info.run_id}")
    assert progress["mlflow_run_url"] == result["mlflow_run_url"]
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags[TRIAL_TAG] for r in trials) == sorted(
        t["trial_id"] for t in result["trials"]
    )


@pytest.mark.slow
def test_two_agents_never_run_a_job_twice(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
) -> None:
    api = make_api(5)
    user = users(api)
    tiny = QUICK | {"search": {"max_trials": 1, "parallel_trials": 1, **BRACKET}}
    job_ids = [user.submit(tiny | {"target_sparsity": t})["id"] for t in (0.3, 0.35, 0.4)]
    racers = (agents(api, "left"), agents(api, "right"))

    jobs = [_final(user, job_id, *racers) for job_id in job_ids]
    for racer in racers:
        racer.signal(signal.SIGTERM)
        assert racer.wait() == 0, racer.log()

    runners = set()
    for job in jobs:
        assert job["state"] in ("succeeded", "unreached"), job
        assert job["attempts"] == 1
        events = job_events(api.database_url, job["id"])
        assert _transitions(events) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", job["state"]),
        ]
        runners.add(events[1]["agent"])
        assert events[2]["agent"] == events[1]["agent"]  # finished by the agent that claimed it
        assert len(job["result"]["trials"]) == 1
    assert runners == {"left", "right"}


@pytest.mark.slow
def test_a_killed_agents_job_is_resumed_by_another(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
    tmp_path: Path,
) -> None:
    api = make_api(3)
    user = users(api)
    job_id = user.submit(SLOW)["id"]
    first = agents(api, "first")
    _trained(user, job_id, first)
    _wait_saved(tmp_path / "storage" / job_id, first)
    reported = user.job(job_id)["progress"]
    search = process_tree(first.search_pids()[job_id])

    first.signal(signal.SIGKILL)
    first.wait()
    # the killed agent's search dies with it, its Ray and its trials with the search; Ray's
    # node agents (dashboard, runtime env) are left to notice their raylet is gone
    _wait_gone(search, ignore=RAY_NODE_AGENTS)

    second = agents(api, "second")
    job = _final(user, job_id, second)
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.log()

    assert job["state"] in ("succeeded", "unreached"), (job, first.log(), second.log())
    assert job["attempts"] == 2
    events = job_events(api.database_url, job_id)
    assert _transitions(events) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "queued"),  # the first agent's lease expired
        ("queued", "running"),
        ("running", job["state"]),
    ]
    assert [e["agent"] for e in events[1:]] == ["first", "first", "second", "second"]
    _assert_resumed(job, reported)


@pytest.mark.slow
def test_cancelling_a_running_job_stops_its_search(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
) -> None:
    api = make_api(5)
    user = users(api)
    job_id = user.submit(SLOW)["id"]
    agent = agents(api, "worker")
    _trained(user, job_id, agent)
    search = process_tree(agent.search_pids()[job_id])

    assert user.cancel(job_id)["cancel_requested"] is True
    job = _final(user, job_id, agent)
    assert job["state"] == "cancelled", job
    last = job_events(api.database_url, job_id)[-1]
    assert (last["from_state"], last["to_state"], last["agent"]) == (
        "running",
        "cancelled",
        "worker",
    )
    assert not (last["reason"] or "").startswith("lease expired")  # the agent reported it
    # the search process, its Ray and its trials are gone; the MLflow runs are not left running
    _wait_gone(search, agent)
    parent, runs = _mlflow_runs(job_id)
    assert parent.info.status == "KILLED"
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    # the agent itself carries on until it is stopped
    assert agent.process.poll() is None, agent.log()
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.log()


@pytest.mark.slow
def test_sigterm_hands_the_running_job_back(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
    tmp_path: Path,
) -> None:
    api = make_api(5)
    user = users(api)
    job_id = user.submit(SLOW)["id"]
    agent = agents(api, "leaving")
    _trained(user, job_id, agent)
    _wait_saved(tmp_path / "storage" / job_id, agent)
    search = process_tree(agent.search_pids()[job_id])

    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.log()
    job = user.job(job_id)
    assert job["state"] == "queued", job
    assert job["attempts"] == 0  # a released attempt is not counted
    last = job_events(api.database_url, job_id)[-1]
    assert (last["from_state"], last["to_state"], last["agent"]) == ("running", "queued", "leaving")
    _wait_gone(search, agent)
    parent, _ = _mlflow_runs(job_id)
    assert parent.info.status == "KILLED"

    # the next agent resumes the experiment the first one saved
    reported = job["progress"]
    successor = agents(api, "next", "--once")
    assert successor.wait(timeout=300) == 0, successor.log()
    job = user.job(job_id)
    assert job["state"] in ("succeeded", "unreached"), (job, successor.log())
    assert job["attempts"] == 1
    _assert_resumed(job, reported)


@pytest.mark.slow
def test_an_api_restarted_mid_job_loses_nothing(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
) -> None:
    # a lease long enough to outlast the restart: the agent keeps its job throughout
    api = make_api(30)
    user = users(api)
    job_id = user.submit(SLOW)["id"]
    agent = agents(api, "steady", "--once")
    _trained(user, job_id, agent)

    assert api.stop() == 0
    assert agent.process.poll() is None  # the agent rides over the outage (its client retries)
    api.restart()

    assert agent.wait(timeout=300) == 0, agent.log()
    job = user.job(job_id)
    assert job["state"] in ("succeeded", "unreached"), (job, agent.log())
    assert job["attempts"] == 1
    assert _transitions(job_events(api.database_url, job_id)) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", job["state"]),
    ]
    assert len(job["result"]["trials"]) <= SLOW["search"]["max_trials"]


def test_a_job_the_agent_cannot_run_fails_with_the_reason(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
    tmp_path: Path,
) -> None:
    api = make_api(5)
    user = users(api)
    missing = tmp_path / "no-such-folder"
    spec = {"model": "resnet20", "dataset": "cifar10", "data_root": str(missing)}
    job_id = user.submit(spec | {"target_sparsity": 0.9})["id"]
    agent = agents(api, "checker", "--once")
    assert agent.wait() == 0, agent.log()
    job = user.job(job_id)
    assert job["state"] == "failed", job
    assert job["error"].startswith(f"FileNotFoundError: {missing} does not exist"), job["error"]
    assert job["attempts"] == 1
    assert not (tmp_path / "storage" / job_id).exists()  # no experiment was started


def test_oversized_progress_and_results_still_reach_the_service(
    tmp_path: Path, users: Callable[[LiveApi], Client]
) -> None:
    api = start_api(
        f"sqlite:///{tmp_path / 'service.db'}", tmp_path, STRSEARCH_MAX_BODY_BYTES="4096"
    )
    try:
        job_id = users(api).submit(QUICK)["id"]
        with api.api_client(api.worker_token) as worker:
            agent = Agent(worker, name="frugal", storage=tmp_path / "storage")
            claim = worker.claim("frugal")
            assert claim is not None and claim.job["id"] == job_id
            # a progress over the body limit: the heartbeat still keeps the lease
            progress = JobProgress(0.35, 0.05, 500)
            for i in range(100):
                progress.trial_started(f"trial-{i:04d}", {"weight_decay": 0.001 * (i + 1)})
            assert len(json.dumps(progress.snapshot())) > 4096
            answer = agent._heartbeat(claim, progress)
            assert isinstance(answer, dict) and answer["cancel"] is False
            # a result over the body limit goes out without the trials' per-layer tables
            layers = {f"layer{i}.conv": 0.5 for i in range(60)}
            best = {"trial_id": "b", "sparsity": 0.35, "budget": {"fc": 0.3}, "thresholds": {}}
            others = [
                {"trial_id": f"t{i}", "budget": layers, "thresholds": layers} for i in range(2)
            ]
            result = {"reached": True, "best": best, "trials": [best, *others]}
            assert len(json.dumps(result)) > 4096
            assert agent._finish(claim, "succeeded", result=result) == "succeeded"
        job = users(api).job(job_id)
        assert job["state"] == "succeeded"
        assert job["progress"] is None
        assert job["result"]["best"] == best
        assert [set(t) for t in job["result"]["trials"]] == [{"trial_id", "sparsity"}] + [
            {"trial_id"}
        ] * 2
    finally:
        api.stop()
