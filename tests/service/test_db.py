"""``service.db.make_engine``: per-backend setup, and the service's import hygiene."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from service.db import READ_ONLY, make_engine, normalize_url

FORBIDDEN = ("torch", "ray", "mlflow", "str_core", "workers")


def test_sqlite_engine_setup(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "service.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 30000
        assert path.is_file()
    finally:
        engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
        # another process holding a write transaction blocks a writer, not a reader
        other = sqlite3.connect(tmp_path / "lock.db", isolation_level=None, timeout=0)
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))  # BEGIN IMMEDIATE holds the write lock now
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            connection.execute(text("SELECT 1"))  # deferred: no write lock
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        other.close()
    finally:
        engine.dispose()


def _connect_after(barrier: threading.Barrier, engine: Engine, errors: list[Exception]) -> None:
    barrier.wait()
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    except Exception as error:  # collected, asserted on in the test's thread
        errors.append(error)


def test_connections_racing_to_open_a_new_sqlite_database_all_get_wal(tmp_path: Path) -> None:
    # without retrying, about a quarter of such 4-way races got "database is locked" at once
    for attempt in range(40):
        engines = [make_engine(f"sqlite:///{tmp_path / f'race{attempt}.db'}") for _ in range(4)]
        barrier = threading.Barrier(len(engines))
        errors: list[Exception] = []
        threads = [
            threading.Thread(target=_connect_after, args=(barrier, e, errors)) for e in engines
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in engines:
            engine.dispose()
        assert not errors, (attempt, errors)


def test_postgresql_urls_use_psycopg() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_postgresql_engine_answers(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        assert engine.pool._pre_ping
    finally:
        engine.dispose()


def test_the_persistence_layer_imports_no_heavy_dependency() -> None:
    code = (
        "import sys, service.settings, service.states, service.db, service.models, "
        "service.records, service.errors, service.store, service.users\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
