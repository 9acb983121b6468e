"""`strsearch token create`: tokens written into real databases (SQLite, PostgreSQL) and used on
a real API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.db import make_engine, schema_at_head
from service.states import Role
from service.users import Users
from strsearch.cli import app
from tests.service.conftest import throwaway_postgres_database
from tests.service.live_api import start_api

runner = CliRunner()


def owner(database_url: str, token: str) -> tuple[str, Role] | None:
    engine = make_engine(database_url)
    try:
        user = Users(engine).authenticate(token)
    finally:
        engine.dispose()
    return None if user is None else (user.name, user.role)


def create(database_url: str, *args: str) -> str:
    result = runner.invoke(app, ["token", "create", *args, "--database", database_url])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("strs_")
    assert "\n" not in token  # stdout holds the token only (the note goes to stderr)
    return token


def test_a_new_database_is_migrated_and_each_role_gets_its_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'service.db'}"
    user = create(url, "--user", "alice", "--label", "laptop")
    engine = make_engine(url)
    try:
        assert schema_at_head(engine)
    finally:
        engine.dispose()
    assert owner(url, user) == ("alice", Role.USER)
    assert owner(url, create(url, "--user", "root", "--admin")) == ("root", Role.ADMIN)
    assert owner(url, create(url, "--user", "gpu-box", "--worker")) == ("gpu-box", Role.WORKER)
    another = create(url, "--user", "alice")
    assert another != user  # a second token of the same user; both work
    assert owner(url, another) == owner(url, user) == ("alice", Role.USER)


def test_the_database_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("STRSEARCH_DATABASE_URL", url)
    result = runner.invoke(app, ["token", "create", "--user", "carol"])
    assert result.exit_code == 0, result.output
    assert owner(url, result.stdout.strip()) == ("carol", Role.USER)


def test_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    create(url, "--user", "dave")
    cases = [
        (["--user", "dave", "--admin"], "exists with role user"),
        (["--user", "x", "--admin", "--worker"], "exclude each other"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["token", "create", *args, "--database", url])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output
    bad = runner.invoke(app, ["token", "create", "--user", "x", "--database", "nonsense"])
    assert bad.exit_code == 2
    assert "not a database URL" in bad.output
    unreachable = "postgresql+psycopg://postgres:secret@127.0.0.1:9/nothing"
    down = runner.invoke(app, ["token", "create", "--user", "x", "--database", unreachable])
    assert down.exit_code == 2
    assert "cannot use the database" in down.output
    assert "secret" not in down.output  # the password is never shown


def test_postgres_token_works_on_a_live_api(tmp_path: Path) -> None:
    with throwaway_postgres_database() as url:
        token = create(url, "--user", "erin")  # migrates the empty database first
        api = start_api(url, tmp_path)
        try:
            submitted = runner.invoke(
                app,
                ["submit", "--model", "digits_cnn", "--dataset", "digits", "--target", "0.8",
                 "--json", "--server", api.url, "--token", token],
            )  # fmt: skip
            assert submitted.exit_code == 0, submitted.output
            assert json.loads(submitted.stdout)["owner"] == "erin"
        finally:
            api.stop()
