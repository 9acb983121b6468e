"""Alembic migrations (``service/migrations``) against empty SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from service.db import (
    MIGRATIONS,
    alembic_config,
    current_revisions,
    head_revisions,
    make_engine,
    schema_at_head,
    upgrade,
)
from service.models import Base
from tests.service.test_store import run_threads

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url_factory: Callable[[], str]
) -> str:
    """A brand-new database with no tables at all."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'service.db'}"
    return postgres_url_factory()


@pytest.fixture
def empty_engine(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def test_upgrade_from_empty_to_head(empty_engine: Engine) -> None:
    assert head_revisions() == {"0001"}
    assert current_revisions(empty_engine) == set()
    assert not schema_at_head(empty_engine)
    upgrade(empty_engine)
    assert schema_at_head(empty_engine)
    tables = set(inspect(empty_engine).get_table_names())
    assert {"users", "tokens", "jobs", "job_events", "alembic_version"} <= tables
    upgrade(empty_engine)  # a second start changes nothing
    assert schema_at_head(empty_engine)


def test_the_orm_metadata_matches_the_migrations(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_leaves_the_schema_behind_head(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    config = alembic_config(empty_engine)
    with empty_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert not schema_at_head(empty_engine)
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    upgrade(empty_engine)
    assert schema_at_head(empty_engine)


def test_concurrent_upgrades_of_one_database(empty_url: str) -> None:
    def start(i: int) -> None:  # several service processes starting on a new database
        engine = make_engine(empty_url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    run_threads(4, start)
    engine = make_engine(empty_url)
    try:
        assert schema_at_head(engine)
    finally:
        engine.dispose()


def test_the_alembic_command_line_works_for_operators(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    env = {**os.environ, "STRSEARCH_DATABASE_URL": url}
    ini = MIGRATIONS / "alembic.ini"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    engine = make_engine(url)
    try:
        assert schema_at_head(engine)
    finally:
        engine.dispose()
    assert (REPO / "service" / "migrations" / "versions" / "0001_initial.py").is_file()
