"""The REST API over real HTTP (a ``python -m service`` process), on SQLite and PostgreSQL.

Jobs, visibility between users, auth, idempotent submission, listing and the operations routes.
The agent protocol is in test_api_agent.py, invalid input in test_api_validation.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.states import Role
from tests.service.live_api import SPEC, LiveApi, new_user

pytest_plugins = ["tests.service.api_fixtures"]

API_ENV = {"STRSEARCH_MAX_TRIALS": "20"}

JOB_FIELDS = {
    "id",
    "owner",
    "state",
    "spec",
    "progress",
    "result",
    "error",
    "attempts",
    "cancel_requested",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
}


def parse_time(value: str) -> datetime:
    """An API time: ISO 8601 in UTC ('Z' or '+00:00')."""
    assert value.endswith(("Z", "+00:00")), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset() == UTC.utcoffset(None)
    return parsed


def submit(client: httpx.Client, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/jobs", json=spec or SPEC)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


# --- jobs -----------------------------------------------------------------------------------


def test_submit_answers_the_queued_job_with_every_default(user_http: httpx.Client) -> None:
    response = user_http.post("/jobs", json=SPEC)
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert job["state"] == "queued"
    assert len(job["id"]) == 32
    assert job["owner"].startswith("user-")
    assert job["spec"]["version"] == 1
    assert job["spec"]["model"] == "digits_cnn"
    assert job["spec"]["search"]["max_trials"] == 12  # defaults are filled in and stored
    assert job["progress"] is None
    assert job["result"] is None
    assert job["error"] is None
    assert job["attempts"] == 0
    assert job["cancel_requested"] is False
    assert job["started_at"] is None
    assert job["finished_at"] is None
    assert parse_time(job["created_at"]) <= parse_time(job["updated_at"])

    read = user_http.get(f"/jobs/{job['id']}")
    assert read.status_code == 200
    assert read.json() == job


def test_unknown_job_is_404(user_http: httpx.Client) -> None:
    for path in ("/jobs/0123456789abcdef0123456789abcdef", "/jobs/no%20such%20id", "/jobs/a%00b"):
        response = user_http.get(path)
        assert response.status_code == 404, (path, response.text)
        assert "not found" in response.json()["detail"]
        assert user_http.post(f"{path}/cancel").status_code == 404


def test_users_see_and_cancel_only_their_own_jobs(
    api: LiveApi, clients: Callable[[str | None], httpx.Client], admin_http: httpx.Client
) -> None:
    alice, bob = clients(new_user(api)), clients(new_user(api))
    job = submit(alice)

    assert bob.get(f"/jobs/{job['id']}").status_code == 404
    assert bob.post(f"/jobs/{job['id']}/cancel").status_code == 404
    assert bob.get("/jobs").json()["total"] == 0
    assert alice.get(f"/jobs/{job['id']}").json()["state"] == "queued"  # bob changed nothing

    assert admin_http.get(f"/jobs/{job['id']}").status_code == 200
    listed = admin_http.get("/jobs", params={"limit": 200}).json()
    assert job["id"] in {item["id"] for item in listed["items"]}

    cancelled = admin_http.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"


def test_cancel_queued_job_at_once_and_finished_job_is_409(user_http: httpx.Client) -> None:
    job = submit(user_http)
    response = user_http.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    cancelled = response.json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["finished_at"] is not None
    assert parse_time(cancelled["finished_at"]) >= parse_time(job["created_at"])

    again = user_http.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert user_http.get(f"/jobs/{job['id']}").json() == cancelled


# --- listing --------------------------------------------------------------------------------


def test_list_is_newest_first_paginated_and_filtered(user_http: httpx.Client) -> None:
    ids = [submit(user_http)["id"] for _ in range(5)]
    for job_id in ids[:2]:
        assert user_http.post(f"/jobs/{job_id}/cancel").status_code == 200

    page = user_http.get("/jobs").json()
    assert page["total"] == 5
    assert page["limit"] == 50
    assert page["offset"] == 0
    assert [item["id"] for item in page["items"]] == ids[::-1]

    first = user_http.get("/jobs", params={"limit": 2}).json()
    second = user_http.get("/jobs", params={"limit": 2, "offset": 2}).json()
    last = user_http.get("/jobs", params={"limit": 2, "offset": 4}).json()
    assert (first["limit"], second["offset"], last["total"]) == (2, 2, 5)
    seen = [item["id"] for part in (first, second, last) for item in part["items"]]
    assert seen == ids[::-1]
    assert user_http.get("/jobs", params={"offset": 5}).json()["items"] == []

    cancelled = user_http.get("/jobs", params={"state": "cancelled"}).json()
    assert cancelled["total"] == 2
    assert {item["id"] for item in cancelled["items"]} == set(ids[:2])
    queued = user_http.get("/jobs", params={"state": "queued"}).json()
    assert {item["id"] for item in queued["items"]} == set(ids[2:])
    both = user_http.get("/jobs", params=[("state", "queued"), ("state", "cancelled")]).json()
    assert both["total"] == 5
    assert user_http.get("/jobs", params={"state": "running"}).json()["total"] == 0


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"state": "done"}, ["query", "state", 0]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 201}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"offset": -1}, ["query", "offset"]),
    ],
)
def test_bad_list_query_is_422_naming_the_parameter(
    user_http: httpx.Client, params: dict[str, str | int], loc: list[object]
) -> None:
    response = user_http.get("/jobs", params=params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


# --- idempotency ----------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_job(
    api: LiveApi, clients: Callable[[str | None], httpx.Client]
) -> None:
    alice = clients(new_user(api))
    first = alice.post("/jobs", json=SPEC, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    assert "idempotency-replayed" not in first.headers

    # the same spec, written differently (a default spelled out), is the same body
    again = alice.post(
        "/jobs", json={**SPEC, "tolerance": 0.005}, headers={"Idempotency-Key": "k-1"}
    )
    assert again.status_code == 200
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()

    other = alice.post(
        "/jobs", json={**SPEC, "target_sparsity": 0.8}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 409
    assert "k-1" in other.json()["detail"]
    assert alice.get("/jobs").json()["total"] == 1

    # keys belong to their user: bob's "k-1" is another job
    bob = clients(new_user(api))
    assert bob.post("/jobs", json=SPEC, headers={"Idempotency-Key": "k-1"}).status_code == 201

    longest = "k" * 200
    assert alice.post("/jobs", json=SPEC, headers={"Idempotency-Key": longest}).status_code == 201
    too_long = alice.post("/jobs", json=SPEC, headers={"Idempotency-Key": "k" * 201})
    assert too_long.status_code == 422
    assert [e["loc"] for e in too_long.json()["detail"]] == [["header", "idempotency-key"]]
    assert alice.get("/jobs").json()["total"] == 2


def test_concurrent_retries_with_one_key_create_one_job(
    api: LiveApi, clients: Callable[[str | None], httpx.Client]
) -> None:
    token = new_user(api)
    answers: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def retry() -> None:
        with api.client(token) as client:
            barrier.wait()
            response = client.post("/jobs", json=SPEC, headers={"Idempotency-Key": "same"})
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(response.status_code for response in answers)
    assert statuses == [200] * 7 + [201], [r.text for r in answers]
    assert len({response.json()["id"] for response in answers}) == 1
    replays = [r for r in answers if r.status_code == 200]
    assert all(r.headers["Idempotency-Replayed"] == "true" for r in replays)
    assert clients(token).get("/jobs").json()["total"] == 1


def test_client_submit_retries_safely(api: LiveApi) -> None:
    """``strsearch.client.Client`` talks to this API: submit, read, list, cancel."""
    with api.api_client(new_user(api)) as client:
        job = client.submit(SPEC, idempotency_key="client-key")
        assert client.submit(SPEC, idempotency_key="client-key")["id"] == job["id"]
        assert client.job(job["id"])["state"] == "queued"
        assert [item["id"] for item in client.jobs(["queued"])["items"]] == [job["id"]]
        assert client.cancel(job["id"])["state"] == "cancelled"


# --- quotas ---------------------------------------------------------------------------------


def test_trial_quota_is_the_users_or_the_default(
    api: LiveApi, clients: Callable[[str | None], httpx.Client]
) -> None:
    def spec(trials: int) -> dict[str, object]:
        return {**SPEC, "search": {"max_trials": trials}}

    default_user = clients(new_user(api))  # STRSEARCH_MAX_TRIALS=20 for this module
    assert default_user.post("/jobs", json=spec(20)).status_code == 201
    over = default_user.post("/jobs", json=spec(21))
    assert over.status_code == 422
    [error] = over.json()["detail"]
    assert error["loc"] == ["body", "search", "max_trials"]
    assert "20" in error["msg"]

    small = clients(new_user(api, max_trials=5))
    assert small.post("/jobs", json=spec(5)).status_code == 201
    assert small.post("/jobs", json=spec(6)).status_code == 422

    large = clients(new_user(api, max_trials=300))
    assert large.post("/jobs", json=spec(300)).status_code == 201


# --- auth -----------------------------------------------------------------------------------

JOB_ROUTES = [
    ("GET", "/jobs", None),
    ("POST", "/jobs", SPEC),
    ("GET", "/jobs/0123456789abcdef0123456789abcdef", None),
    ("POST", "/jobs/0123456789abcdef0123456789abcdef/cancel", None),
]
AGENT_ROUTES = [
    ("POST", "/agent/claim", {"agent": "a"}),
    ("POST", "/agent/jobs/0123456789abcdef0123456789abcdef/heartbeat", {"lease_id": "x"}),
    (
        "POST",
        "/agent/jobs/0123456789abcdef0123456789abcdef/finish",
        {"lease_id": "x", "state": "failed"},
    ),
    ("POST", "/agent/jobs/0123456789abcdef0123456789abcdef/release", {"lease_id": "x"}),
]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer strs_not-a-token", "Bearer", "Basic dXNlcjpwYXNz", "strs_no-scheme"],
)
def test_missing_or_unknown_token_is_401(
    api: LiveApi, clients: Callable[[str | None], httpx.Client], authorization: str | None
) -> None:
    client = clients(None)
    headers = {"Authorization": authorization} if authorization else {}
    for method, path, body in JOB_ROUTES + AGENT_ROUTES:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["detail"]


def test_roles_are_checked_on_every_route(
    api: LiveApi,
    clients: Callable[[str | None], httpx.Client],
    worker_http: httpx.Client,
    admin_http: httpx.Client,
    user_http: httpx.Client,
) -> None:
    for method, path, body in JOB_ROUTES:
        response = worker_http.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "worker" in response.json()["detail"]
    for client in (user_http, admin_http):
        for method, path, body in AGENT_ROUTES:
            response = client.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)


def test_tokens_made_for_a_user_all_work(
    api: LiveApi, clients: Callable[[str | None], httpx.Client]
) -> None:
    first = api.token("carol")
    second = api.token("carol")
    assert first != second
    job = submit(clients(first))
    assert clients(second).get(f"/jobs/{job['id']}").json()["owner"] == "carol"
    with pytest.raises(ValueError, match="role"):
        api.token("carol", Role.WORKER)


# --- operations -----------------------------------------------------------------------------


def test_health_and_ready(clients: Callable[[str | None], httpx.Client]) -> None:
    anonymous = clients(None)
    health = anonymous.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = anonymous.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_docs_and_openapi_are_served(clients: Callable[[str | None], httpx.Client]) -> None:
    anonymous = clients(None)
    docs = anonymous.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = anonymous.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
        "/agent/claim",
        "/agent/jobs/{job_id}/heartbeat",
        "/agent/jobs/{job_id}/finish",
        "/agent/jobs/{job_id}/release",
        "/health",
        "/ready",
        "/metrics",
    } <= paths
    submit_body = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert submit_body["schema"]["$ref"].endswith("/SearchSpec")
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def metric_samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_jobs_requests_and_transitions(
    clients: Callable[[str | None], httpx.Client],
    admin_http: httpx.Client,
    user_http: httpx.Client,
) -> None:
    anonymous = clients(None)
    before = metric_samples(anonymous)
    job = submit(user_http)
    user_http.get(f"/jobs/{job['id']}")
    user_http.post(f"/jobs/{job['id']}/cancel")
    after = metric_samples(anonymous)

    for state in ("queued", "running", "succeeded", "unreached", "failed", "cancelled"):
        total = admin_http.get("/jobs", params={"state": state, "limit": 1}).json()["total"]
        assert after[("strsearch_jobs", (("state", state),))] == total

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("strsearch_job_transitions_total", to="queued") == 1
    assert delta("strsearch_job_transitions_total", to="cancelled") == 1
    assert (
        delta("strsearch_http_requests_total", method="GET", route="/jobs/{job_id}", status="200")
        == 1
    )
    assert delta("strsearch_http_requests_total", method="POST", route="/jobs", status="201") == 1
    assert delta("strsearch_http_request_seconds_count", method="POST", route="/jobs") >= 1
    assert ("strsearch_leases_expired_total", ()) in after


def test_unknown_routes_and_methods_answer_json(
    clients: Callable[[str | None], httpx.Client],
) -> None:
    anonymous = clients(None)
    missing = anonymous.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    wrong_method = anonymous.delete("/health")
    assert wrong_method.status_code == 405
    assert "detail" in wrong_method.json()
