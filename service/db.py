"""Engines and schema migrations for the service's database (SQLite or PostgreSQL).

``make_engine`` sets up each backend for a multi-process job queue: SQLite gets WAL (readers
never block the writer), a 30 s busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for write
transactions, so two processes never deadlock upgrading a read lock to a write lock; a
connection opened with the execution option ``strsearch_read_only=True`` begins a plain
(deferred) transaction instead. ``upgrade`` runs the Alembic migrations in
``service/migrations`` programmatically (no ``alembic.ini`` needed), and ``schema_at_head``
tells ``/ready`` whether the database is at the latest migration.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0
#: execution option that makes a SQLite transaction deferred (read-only work)
READ_ONLY = "strsearch_read_only"
#: any 64-bit constant: serializes concurrent ``upgrade`` calls on PostgreSQL
_MIGRATION_LOCK = 0x5354_5253_4541_5243 & 0x7FFF_FFFF_FFFF_FFFF
_HOLDS_WRITE_LOCK = "strsearch_holds_write_lock"


def normalize_url(url: str | URL) -> URL:
    """Parse the URL; a bare ``postgresql://`` uses psycopg 3 (the driver installed)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


@contextlib.contextmanager
def scratch_databases(admin_url: str, names: Sequence[str]) -> Iterator[list[str]]:
    """Create the databases ``names`` on the PostgreSQL server of ``admin_url``, yield their
    URLs, and drop them afterwards (closing whatever still connects to them).

    For tests, benchmarks and the local topology, which each need databases of their own on a
    running server. A name that exists already is an error: nothing of another owner is dropped.
    """
    url = normalize_url(admin_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    created: list[str] = []
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
                created.append(name)
        yield [url.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        with admin.connect() as connection:
            for name in created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` set up for concurrent use by several threads and processes."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True)


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database to write-ahead logging, retrying while another connection holds it.

    Switching needs the database to itself, and SQLite answers "database is locked" at once,
    without its busy handler, when waiting could deadlock: several processes opening a new
    database together meet that (a quarter of 4-way races here). The mode is stored in the
    file, so the retry succeeds as soon as one of them has switched it.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take transaction control from the sqlite3 module; "begin" below issues BEGIN itself
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            _enable_wal(cursor)
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    # Writers of this process queue on a lock before BEGIN IMMEDIATE: SQLite's own busy handler
    # makes a waiting writer sleep in growing steps (up to 100 ms), which under concurrent
    # submissions put seconds on the slowest requests; the lock hands over at once. Writers in
    # other processes still meet the busy timeout.
    writers = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN")
            return
        writers.acquire()
        connection.info[_HOLDS_WRITE_LOCK] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection)
            raise

    def _release(connection: Connection) -> None:
        if connection.info.pop(_HOLDS_WRITE_LOCK, False):
            writers.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)
    return engine


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at the package's migrations (and at ``engine``'s URL)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        rendered = engine.url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Migrate the database to the latest revision (safe when several processes start at once)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def head_revisions() -> set[str]:
    """The revisions the code expects (normally one)."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at (empty before the first migration)."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def schema_at_head(engine: Engine) -> bool:
    """True when the database is at the latest migration; connection errors propagate."""
    return current_revisions(engine) == head_revisions()
