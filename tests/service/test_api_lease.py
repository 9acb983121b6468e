"""Lease expiry over real HTTP, with 3 s leases and 2 attempts (SQLite and PostgreSQL).

Nothing here claims after waiting: the API's own background reaper must take expired leases
back. Waits poll the job's state (no wall-clock assertions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.agent_helpers import claim, drain_queue, submit, wait_for

pytest_plugins = ["tests.service.api_fixtures"]

LEASE_S = 3.0
API_ENV = {"STRSEARCH_LEASE_SECONDS": str(LEASE_S), "STRSEARCH_MAX_ATTEMPTS": "2"}


@pytest.fixture(autouse=True)
def empty_queue(worker_http: httpx.Client) -> None:
    drain_queue(worker_http)


def leases_expired(client: httpx.Client) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "strsearch_leases_expired_total":
                return sample.value
    raise AssertionError("no strsearch_leases_expired_total")


def test_an_expired_lease_is_lost_and_the_job_fails_after_max_attempts(
    clients: Callable[[str | None], httpx.Client],
    user_http: httpx.Client,
    worker_http: httpx.Client,
) -> None:
    expired_before = leases_expired(clients(None))
    job = submit(user_http)
    path = f"/agent/jobs/{job['id']}"

    def read() -> dict[str, Any]:
        response = user_http.get(f"/jobs/{job['id']}")
        assert response.status_code == 200
        return dict(response.json())

    first = claim(worker_http, "vanishing-1")
    requeued = wait_for(read, lambda j: j["state"] == "queued")
    assert requeued["attempts"] == 1  # the expired attempt counts

    stale = first["lease_id"]
    refused = [
        worker_http.post(f"{path}/heartbeat", json={"lease_id": stale}),
        worker_http.post(f"{path}/finish", json={"lease_id": stale, "state": "failed"}),
        worker_http.post(f"{path}/release", json={"lease_id": stale}),
    ]
    assert [r.status_code for r in refused] == [409] * 3
    assert read()["state"] == "queued"

    second = claim(worker_http, "vanishing-2")
    assert second["job"]["id"] == job["id"]
    assert second["attempt"] == 2  # the agent resumes the experiment
    # the first agent cannot touch the re-claimed job either
    assert worker_http.post(f"{path}/heartbeat", json={"lease_id": stale}).status_code == 409

    failed = wait_for(read, lambda j: j["state"] != "running")
    assert failed["state"] == "failed"
    assert "lease expired 2 times" in failed["error"]
    assert "vanishing-2" in failed["error"]
    assert failed["finished_at"] is not None

    late = worker_http.post(
        f"{path}/finish", json={"lease_id": second["lease_id"], "state": "succeeded"}
    )
    assert late.status_code == 409
    assert read() == failed
    assert worker_http.post("/agent/claim", json={"agent": "a"}).status_code == 204
    assert leases_expired(clients(None)) - expired_before == 2


def test_heartbeats_keep_a_lease_alive_past_its_length(
    user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    job = submit(user_http)
    lease = claim(worker_http)["lease_id"]
    path = f"/agent/jobs/{job['id']}"
    end = time.monotonic() + 2 * LEASE_S + 1
    while time.monotonic() < end:
        beat = worker_http.post(f"{path}/heartbeat", json={"lease_id": lease})
        assert beat.status_code == 200, beat.text
        time.sleep(LEASE_S / 6)
    done = worker_http.post(f"{path}/finish", json={"lease_id": lease, "state": "unreached"})
    assert done.status_code == 200
    assert (done.json()["state"], done.json()["attempts"]) == ("unreached", 1)


def test_a_cancel_request_whose_agent_vanished_cancels_at_expiry(
    user_http: httpx.Client, worker_http: httpx.Client
) -> None:
    job = submit(user_http)
    claim(worker_http)
    assert user_http.post(f"/jobs/{job['id']}/cancel").json()["cancel_requested"] is True
    cancelled = wait_for(
        lambda: dict(user_http.get(f"/jobs/{job['id']}").json()),
        lambda j: j["state"] != "running",
    )
    assert cancelled["state"] == "cancelled"
    assert worker_http.post("/agent/claim", json={"agent": "a"}).status_code == 204
