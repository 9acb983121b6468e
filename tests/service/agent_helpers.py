"""Helpers of the agent-route tests: emptying the queue, claiming, waiting for a state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.service.live_api import SPEC

WAIT_S = 60.0


def drain_queue(worker: httpx.Client) -> int:
    """Claim every queued job and fail it, so the next claim sees only the test's own jobs."""
    drained = 0
    while True:
        response = worker.post("/agent/claim", json={"agent": "drain"})
        if response.status_code == 204:
            return drained
        assert response.status_code == 200, response.text
        claim = response.json()
        finish = worker.post(
            f"/agent/jobs/{claim['job']['id']}/finish",
            json={"lease_id": claim["lease_id"], "state": "failed", "error": "drained by tests"},
        )
        assert finish.status_code == 200, finish.text
        drained += 1


def submit(client: httpx.Client, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Submit a job (201) and return it."""
    response = client.post("/jobs", json=spec or SPEC)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def claim(worker: httpx.Client, agent: str = "agent-1") -> dict[str, Any]:
    """Claim a job (200) and return the answer."""
    response = worker.post("/agent/claim", json={"agent": agent})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wait_for(
    read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll ``read()`` until ``done`` holds for its value (fails after a generous timeout)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not there after {WAIT_S} s: {value}")
        time.sleep(0.1)
