"""The agent routes over real HTTP: claim, heartbeat, finish, release, cancel; SQLite and PG.

Leases here are long (the default 60 s) so that none expires by accident; expiry is tested in
test_api_lease.py. Each test starts from an empty queue (claims take the oldest queued job).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.agent_helpers import claim, drain_queue, submit
from tests.service.live_api import SPEC, LiveApi, new_user

pytest_plugins = ["tests.service.api_fixtures"]

PROGRESS: dict[str, Any] = {
    "trials_done": 1,
    "trials_running": 1,
    "trials_total": 12,
    "epochs": 10,
    "best": {"trial_id": "t1", "sparsity": 0.902, "val_acc": 0.97, "status": "landed"},
    "trials": [{"trial_id": "t1", "epoch": 10, "sparsity": 0.902, "state": "landed"}],
    "updated_at": "2026-11-21T10:00:00Z",
}
RESULT: dict[str, Any] = {
    "reached": True,
    "target": 0.9,
    "tolerance": 0.005,
    "best": {"trial_id": "t1", "sparsity": 0.902, "budget": {"conv1": 0.5}, "val_acc": 0.97},
    "trials": [{"trial_id": "t1"}, {"trial_id": "t2"}],
    "total_epochs": 20,
}


@pytest.fixture(autouse=True)
def empty_queue(worker_http: httpx.Client) -> None:
    drain_queue(worker_http)


def test_claim_on_an_empty_queue_is_204(worker_http: httpx.Client) -> None:
    response = worker_http.post("/agent/claim", json={"agent": "a"})
    assert response.status_code == 204
    assert response.content == b""


def test_a_job_runs_to_success_and_never_changes_again(
    user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    job = submit(user_http)
    answer = claim(worker_http, "host-1")
    assert set(answer) == {"job", "lease_id", "lease_seconds", "lease_expires_at", "attempt"}
    assert answer["job"]["id"] == job["id"]
    assert answer["job"]["state"] == "running"
    assert answer["job"]["attempts"] == 1
    assert answer["job"]["started_at"] is not None
    assert answer["attempt"] == 1
    assert answer["lease_seconds"] == 60
    claimed_until = datetime.fromisoformat(answer["lease_expires_at"])
    lease = answer["lease_id"]
    path = f"/agent/jobs/{job['id']}"

    beat = worker_http.post(f"{path}/heartbeat", json={"lease_id": lease, "progress": PROGRESS})
    assert beat.status_code == 200
    assert beat.json()["cancel"] is False
    assert datetime.fromisoformat(beat.json()["lease_expires_at"]) >= claimed_until

    running = user_http.get(f"/jobs/{job['id']}").json()
    assert running["state"] == "running"
    assert running["progress"] == PROGRESS
    listed = user_http.get("/jobs").json()["items"][0]
    assert "trials" not in listed["progress"]
    assert listed["progress"]["best"] == PROGRESS["best"]

    # a heartbeat without progress keeps the last one
    assert worker_http.post(f"{path}/heartbeat", json={"lease_id": lease}).status_code == 200
    assert user_http.get(f"/jobs/{job['id']}").json()["progress"] == PROGRESS

    body = {"lease_id": lease, "state": "succeeded", "result": RESULT, "error": None}
    finished = worker_http.post(f"{path}/finish", json=body)
    assert finished.status_code == 200
    done = finished.json()
    assert done["state"] == "succeeded"
    assert done["result"] == RESULT
    assert done["finished_at"] is not None
    assert user_http.get(f"/jobs/{job['id']}").json() == done
    listed = user_http.get("/jobs").json()["items"][0]
    assert "trials" not in listed["result"]
    assert listed["result"]["best"] == RESULT["best"]

    # a retry of the same finish answers the same job
    again = worker_http.post(f"{path}/finish", json=body)
    assert (again.status_code, again.json()) == (200, done)

    # nothing else can change it
    refused = [
        worker_http.post(f"{path}/finish", json={**body, "state": "failed", "error": "x"}),
        worker_http.post(f"{path}/finish", json={**body, "result": {"reached": False}}),
        worker_http.post(f"{path}/heartbeat", json={"lease_id": lease, "progress": PROGRESS}),
        worker_http.post(f"{path}/release", json={"lease_id": lease}),
        user_http.post(f"/jobs/{job['id']}/cancel"),
    ]
    assert [response.status_code for response in refused] == [409] * 5
    assert "succeeded" in refused[-1].json()["detail"]
    assert all(response.json()["detail"] for response in refused)
    assert user_http.get(f"/jobs/{job['id']}").json() == done


@pytest.mark.parametrize(
    ("state", "result", "error"),
    [
        ("unreached", RESULT, None),
        ("failed", None, "CUDA out of memory"),
        ("cancelled", None, None),
    ],
)
def test_every_final_state_can_be_reported(
    user_http: httpx.Client,
    worker_http: httpx.Client,
    state: str,
    result: dict[str, Any] | None,
    error: str | None,
) -> None:
    job = submit(user_http)
    lease = claim(worker_http)["lease_id"]
    body = {"lease_id": lease, "state": state, "result": result, "error": error}
    done = worker_http.post(f"/agent/jobs/{job['id']}/finish", json=body)
    assert done.status_code == 200
    assert (done.json()["state"], done.json()["result"], done.json()["error"]) == (
        state,
        result,
        error,
    )


def test_jobs_are_claimed_oldest_first_and_once(
    user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    ids = [submit(user_http)["id"] for _ in range(3)]
    claimed = [claim(worker_http)["job"]["id"] for _ in range(3)]
    assert claimed == ids
    assert worker_http.post("/agent/claim", json={"agent": "a"}).status_code == 204


def test_concurrent_agents_never_share_a_job(
    api: LiveApi, user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    ids = {submit(user_http)["id"] for _ in range(8)}
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def agent(name: str) -> None:
        with api.client(api.worker_token) as client:
            barrier.wait()
            while True:
                response = client.post("/agent/claim", json={"agent": name})
                if response.status_code == 204:
                    return
                assert response.status_code == 200, response.text
                with lock:
                    claimed.append(response.json()["job"]["id"])

    threads = [threading.Thread(target=agent, args=(f"agent-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)


def test_a_wrong_lease_changes_nothing(user_http: httpx.Client, worker_http: httpx.Client) -> None:
    first, second = submit(user_http), submit(user_http)
    lease_1 = claim(worker_http)["lease_id"]
    lease_2 = claim(worker_http)["lease_id"]
    before = user_http.get(f"/jobs/{first['id']}").json()
    path = f"/agent/jobs/{first['id']}"
    for lease in ("not-a-lease", lease_2):
        responses = [
            worker_http.post(f"{path}/heartbeat", json={"lease_id": lease, "progress": PROGRESS}),
            worker_http.post(f"{path}/finish", json={"lease_id": lease, "state": "failed"}),
            worker_http.post(f"{path}/release", json={"lease_id": lease}),
        ]
        assert [r.status_code for r in responses] == [409] * 3
        assert all("lease" in r.json()["detail"] for r in responses)
    assert user_http.get(f"/jobs/{first['id']}").json() == before
    # the rightful agent goes on
    assert worker_http.post(f"{path}/heartbeat", json={"lease_id": lease_1}).status_code == 200
    assert (
        worker_http.post(
            f"/agent/jobs/{second['id']}/heartbeat", json={"lease_id": lease_2}
        ).status_code
        == 200
    )


def test_unknown_job_on_agent_routes_is_refused(worker_http: httpx.Client) -> None:
    path = "/agent/jobs/0123456789abcdef0123456789abcdef"
    for route, body in (
        ("heartbeat", {"lease_id": "x"}),
        ("finish", {"lease_id": "x", "state": "failed"}),
        ("release", {"lease_id": "x"}),
    ):
        response = worker_http.post(f"{path}/{route}", json=body)
        assert response.status_code in (404, 409), response.text


def test_cancelling_a_running_job_asks_its_agent_to_stop(
    user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    job = submit(user_http)
    lease = claim(worker_http)["lease_id"]
    path = f"/agent/jobs/{job['id']}"
    assert worker_http.post(f"{path}/heartbeat", json={"lease_id": lease}).json()["cancel"] is False

    asked = user_http.post(f"/jobs/{job['id']}/cancel")
    assert asked.status_code == 200
    assert (asked.json()["state"], asked.json()["cancel_requested"]) == ("running", True)
    assert user_http.post(f"/jobs/{job['id']}/cancel").status_code == 200  # asking twice is fine

    beat = worker_http.post(f"{path}/heartbeat", json={"lease_id": lease})
    assert (beat.status_code, beat.json()["cancel"]) == (200, True)
    done = worker_http.post(f"{path}/finish", json={"lease_id": lease, "state": "cancelled"})
    assert done.status_code == 200
    assert done.json()["state"] == "cancelled"
    assert user_http.post(f"/jobs/{job['id']}/cancel").status_code == 409


def test_release_queues_the_job_again_without_counting_the_attempt(
    user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    job = submit(user_http)
    first = claim(worker_http, "leaving")
    path = f"/agent/jobs/{job['id']}"
    released = worker_http.post(f"{path}/release", json={"lease_id": first["lease_id"]})
    assert released.status_code == 200
    assert (released.json()["state"], released.json()["attempts"]) == ("queued", 0)

    assert (
        worker_http.post(f"{path}/heartbeat", json={"lease_id": first["lease_id"]}).status_code
        == 409
    )
    second = claim(worker_http, "next")
    assert second["job"]["id"] == job["id"]
    assert second["attempt"] == 1
    assert second["lease_id"] != first["lease_id"]
    assert (
        worker_http.post(f"{path}/release", json={"lease_id": first["lease_id"]}).status_code == 409
    )


def test_release_after_a_cancel_request_cancels(
    user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    job = submit(user_http)
    lease = claim(worker_http)["lease_id"]
    user_http.post(f"/jobs/{job['id']}/cancel")
    released = worker_http.post(f"/agent/jobs/{job['id']}/release", json={"lease_id": lease})
    assert released.status_code == 200
    assert released.json()["state"] == "cancelled"
    assert worker_http.post("/agent/claim", json={"agent": "a"}).status_code == 204


def test_project_client_runs_the_agent_protocol(api: LiveApi) -> None:
    """strsearch.client.Client (used by the agent) against the real API."""
    with api.api_client(new_user(api)) as user, api.api_client(api.worker_token) as worker:
        job = user.submit(SPEC)
        lease = worker.claim("client-agent")
        assert lease is not None
        assert lease.job["id"] == job["id"]
        assert (lease.lease_seconds, lease.attempt) == (60.0, 1)
        assert worker.heartbeat(job["id"], lease.lease_id, PROGRESS)["cancel"] is False
        done = worker.finish(job["id"], lease.lease_id, "succeeded", result=RESULT)
        assert done["state"] == "succeeded"
        assert worker.finish(job["id"], lease.lease_id, "succeeded", result=RESULT) == done
        assert worker.claim("client-agent") is None
        assert user.job(job["id"])["result"] == RESULT


def test_transitions_are_counted(
    clients: Callable[[str | None], httpx.Client],
    user_http: httpx.Client,
    worker_http: httpx.Client,
) -> None:
    def transitions() -> dict[str, float]:
        text = clients(None).get("/metrics").text
        return {
            sample.labels["to"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "strsearch_job_transitions_total"
        }

    before = transitions()
    job = submit(user_http)
    lease = claim(worker_http)["lease_id"]
    body = {"lease_id": lease, "state": "succeeded", "result": RESULT}
    for _ in range(2):  # the repeated finish is not a second transition
        assert worker_http.post(f"/agent/jobs/{job['id']}/finish", json=body).status_code == 200
    after = transitions()
    changed = {state: after[state] - before.get(state, 0.0) for state in after}
    assert changed == {
        "queued": 1,
        "running": 1,
        "succeeded": 1,
        "unreached": 0,
        "failed": 0,
        "cancelled": 0,
    }
