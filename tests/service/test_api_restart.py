"""The API process stopped and started again on the same database loses nothing; database
trouble is answered with JSON (503 / 500), never a traceback. SQLite and PostgreSQL.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from service.db import make_engine
from tests.service.agent_helpers import claim, submit
from tests.service.live_api import BACKENDS, SPEC, LiveApi, database_for, new_user, start_api

PROGRESS = {"trials_done": 1, "trials": [{"trial_id": "t1"}]}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, postgres_url_factory: Callable[[], str]) -> str:
    return database_for(backend, tmp_path, postgres_url_factory)


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[LiveApi]:
    live = start_api(db_url, tmp_path)
    yield live
    live.stop()


def snapshot(client: httpx.Client) -> dict[str, Any]:
    page = client.get("/jobs", params={"limit": 200}).json()
    return {item["id"]: client.get(f"/jobs/{item['id']}").json() for item in page["items"]}


def test_restart_loses_nothing(api: LiveApi) -> None:
    user_token = new_user(api)
    with api.client(user_token) as user, api.client(api.worker_token) as worker:
        queued = submit(user)
        running = submit(user)
        finished = submit(user)
        cancelled = submit(user)
        keyed = user.post("/jobs", json=SPEC, headers={"Idempotency-Key": "before-restart"})
        assert keyed.status_code == 201
        assert user.post(f"/jobs/{cancelled['id']}/cancel").status_code == 200

        lease_1 = claim(worker)  # the oldest: `queued`, finished below so `running` is claimed
        assert lease_1["job"]["id"] == queued["id"]
        lease_2 = claim(worker)
        assert lease_2["job"]["id"] == running["id"]
        lease_3 = claim(worker)
        assert lease_3["job"]["id"] == finished["id"]
        done = worker.post(
            f"/agent/jobs/{finished['id']}/finish",
            json={"lease_id": lease_3["lease_id"], "state": "succeeded", "result": PROGRESS},
        )
        assert done.status_code == 200
        release = worker.post(
            f"/agent/jobs/{queued['id']}/release", json={"lease_id": lease_1["lease_id"]}
        )
        assert release.status_code == 200
        beat = worker.post(
            f"/agent/jobs/{running['id']}/heartbeat",
            json={"lease_id": lease_2["lease_id"], "progress": PROGRESS},
        )
        assert beat.status_code == 200
        before = snapshot(user)
    assert {job["state"] for job in before.values()} == {
        "queued",
        "running",
        "succeeded",
        "cancelled",
    }

    assert api.stop() == 0  # SIGTERM: a clean exit
    api.restart()

    with (
        api.client(user_token) as user,
        api.client(api.worker_token) as worker,
        api.client(api.admin_token) as admin,
    ):
        assert snapshot(user) == before
        assert admin.get("/jobs").json()["total"] == len(before)
        again = user.post("/jobs", json=SPEC, headers={"Idempotency-Key": "before-restart"})
        assert (again.status_code, again.json()["id"]) == (200, keyed.json()["id"])
        # the lease of the running job survived: its agent goes on
        path = f"/agent/jobs/{running['id']}"
        beat = worker.post(f"{path}/heartbeat", json={"lease_id": lease_2["lease_id"]})
        assert beat.status_code == 200
        finish = worker.post(
            f"{path}/finish", json={"lease_id": lease_2["lease_id"], "state": "unreached"}
        )
        assert finish.status_code == 200
        # the queue order survived too
        assert claim(worker)["job"]["id"] == queued["id"]
        assert claim(worker)["job"]["id"] == keyed.json()["id"]
        assert worker.post("/agent/claim", json={"agent": "a"}).status_code == 204
    assert api.stop(signal.SIGINT) == 0


def test_client_rides_over_a_restart(api: LiveApi) -> None:
    """strsearch.client.Client retries while the API is down; a keyed submission stays single."""
    token = new_user(api)
    with api.api_client(token) as client:
        job = client.submit(SPEC)
        api.stop()

        def restart_soon() -> None:
            time.sleep(1.0)
            api.restart()

        restarter = threading.Thread(target=restart_soon)
        restarter.start()
        try:
            submitted = client.submit(SPEC, idempotency_key="during-restart")
            assert client.job(job["id"]) == job
        finally:
            restarter.join()
        assert client.submit(SPEC, idempotency_key="during-restart")["id"] == submitted["id"]
        assert client.jobs()["total"] == 2


def test_ready_is_503_until_the_schema_is_at_head(api: LiveApi, db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            connection.execute(text("UPDATE alembic_version SET version_num = 'not_a_revision'"))
        with api.client() as anonymous:
            response = anonymous.get("/ready")
            assert response.status_code == 503
            assert "migration" in response.json()["detail"]
            assert anonymous.get("/health").status_code == 200
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE alembic_version SET version_num = :head"), {"head": head}
                )
            assert anonymous.get("/ready").status_code == 200
    finally:
        engine.dispose()


def _drop_database(url: str) -> None:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{parsed.database}" WITH (FORCE)')
    finally:
        admin.dispose()


def test_a_database_that_is_gone_is_503_never_500(
    postgres_url_factory: Callable[[], str], tmp_path: Path
) -> None:
    url = postgres_url_factory()
    api = start_api(url, tmp_path)
    try:
        token = new_user(api)
        with api.client(token) as user, api.client() as anonymous:
            submit(user)
            _drop_database(url)
            for response in (user.get("/jobs"), user.post("/jobs", json=SPEC)):
                assert response.status_code == 503, response.text
                assert "Traceback" not in response.text
            listing = user.get("/jobs")
            assert listing.status_code == 503
            assert listing.headers["Retry-After"] == "1"
            assert "database" in listing.json()["detail"]
            ready = anonymous.get("/ready")
            assert ready.status_code == 503
            assert "database" in ready.json()["detail"]
            assert anonymous.get("/health").status_code == 200
            assert anonymous.get("/metrics").status_code == 200
        assert api.stop() == 0
    finally:
        api.stop()


def test_an_unexpected_error_is_a_json_500_without_traceback(
    postgres_url_factory: Callable[[], str], tmp_path: Path
) -> None:
    url = postgres_url_factory()
    api = start_api(url, tmp_path)
    try:
        token = new_user(api)
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text("DROP TABLE job_events, jobs CASCADE"))
        finally:
            engine.dispose()
        with api.client(token) as user:
            response = user.get("/jobs")
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error"}
        assert api.stop() == 0
        assert "UndefinedTable" in api.log_path.read_text()  # logged on the server side
    finally:
        api.stop()
