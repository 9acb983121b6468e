"""Fixtures of the service tests: real databases (a SQLite file, a throw-away PostgreSQL one).

``engine`` is parametrized over both backends, so every contract test runs on SQLite and on the
PostgreSQL server at 127.0.0.1:5432 (user ``postgres``, trust auth; another admin URL can be
given in ``STRSEARCH_TEST_POSTGRES_URL``). PostgreSQL databases are named
``strsearch_test_<random hex>`` and dropped at the end, whatever happened.

Reusable by other test modules:

- ``throwaway_postgres_database()``: context manager yielding the URL of a new, empty database;
- ``postgres_url`` (session): one such URL for the whole session (empty: migrate it yourself);
- ``postgres_url_factory`` (session): a callable making more of them, all dropped at the end;
- ``clock`` / :class:`FakeClock`: a settable UTC clock to hand to ``JobStore``.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from service.db import make_engine, scratch_databases, upgrade
from service.records import UserRecord
from service.states import Role
from service.store import JobStore
from service.users import Users

POSTGRES_ADMIN_URL = os.environ.get(
    "STRSEARCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]
LEASE_SECONDS = 10.0
MAX_ATTEMPTS = 3
#: tables emptied between tests sharing the session's PostgreSQL database (children first)
TABLES = ("job_events", "jobs", "tokens", "users")


@contextmanager
def throwaway_postgres_database() -> Iterator[str]:
    """Create ``strsearch_test_<hex>`` on the test server; yield its URL; drop it afterwards."""
    with scratch_databases(POSTGRES_ADMIN_URL, [f"strsearch_test_{secrets.token_hex(6)}"]) as urls:
        yield urls[0]


@pytest.fixture(scope="session")
def postgres_url_factory() -> Iterator[Callable[[], str]]:
    """Make fresh empty PostgreSQL databases on demand; all are dropped when the session ends."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(throwaway_postgres_database())


@pytest.fixture(scope="session")
def postgres_url(postgres_url_factory: Callable[[], str]) -> str:
    """The URL of an empty PostgreSQL database that lives for the whole session."""
    return postgres_url_factory()


@pytest.fixture(scope="session")
def _store_postgres_url(postgres_url_factory: Callable[[], str]) -> str:
    """This suite's own migrated PostgreSQL database (emptied before each test)."""
    url = postgres_url_factory()
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a migrated, empty database on the parametrized backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'service.db'}"
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return url
    url = str(request.getfixturevalue("_store_postgres_url"))
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a migrated, empty database: SQLite file or PostgreSQL (parametrized)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


class FakeClock:
    """A UTC clock that only moves when told to (thread-safe)."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(engine: Engine, clock: FakeClock) -> JobStore:
    """A store with 10 s leases and 3 attempts, on the fake clock."""
    return JobStore(engine, lease_seconds=LEASE_SECONDS, max_attempts=MAX_ATTEMPTS, clock=clock)


@pytest.fixture
def users(engine: Engine) -> Users:
    return Users(engine)


@pytest.fixture
def alice(users: Users) -> UserRecord:
    return users.ensure_user("alice")


@pytest.fixture
def bob(users: Users) -> UserRecord:
    return users.ensure_user("bob")


@pytest.fixture
def admin(users: Users) -> UserRecord:
    return users.ensure_user("root", Role.ADMIN)
