"""Fixtures for the API tests: one real API process per test module and database backend.

A test module loads them with ``pytest_plugins = ["tests.service.api_fixtures"]`` (and must not
import this module itself: pytest rewrites it as a plugin); helpers are in live_api.py.
The ``api`` fixture is parametrized over SQLite and PostgreSQL; a module can set extra
environment for its API with a module-level ``API_ENV = {"STRSEARCH_LEASE_SECONDS": "2"}``.
Tests sharing one API isolate themselves by using fresh users (``live_api.new_user``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.service.live_api import BACKENDS, LiveApi, database_for, new_user, start_api


@pytest.fixture(scope="module", params=BACKENDS)
def api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url_factory: Callable[[], str],
) -> Iterator[LiveApi]:
    """A real API process on a fresh database, shared by the tests of one module."""
    tmp_path = tmp_path_factory.mktemp(f"api-{request.param}")
    url = database_for(request.param, tmp_path, postgres_url_factory)
    live = start_api(url, tmp_path, **getattr(request.module, "API_ENV", {}))
    yield live
    live.stop()


@pytest.fixture
def clients(api: LiveApi) -> Iterator[Callable[[str | None], httpx.Client]]:
    """Make HTTP clients on the API (by token); all are closed after the test."""
    made: list[httpx.Client] = []

    def make(token: str | None) -> httpx.Client:
        client = api.client(token)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def user_http(api: LiveApi, clients: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """A client of a fresh user."""
    return clients(new_user(api))


@pytest.fixture
def admin_http(api: LiveApi, clients: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """A client of the bootstrap admin."""
    return clients(api.admin_token)


@pytest.fixture
def worker_http(api: LiveApi, clients: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """A client of the test worker."""
    return clients(api.worker_token)
