"""Users and hashed tokens (``service.users``), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import Engine, select

from service.db import make_engine
from service.models import Token
from service.states import Role
from service.users import Users, hash_token, new_token
from tests.service.test_store import run_threads


def test_new_tokens_are_random_and_well_formed() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert re.fullmatch(r"strs_[A-Za-z0-9_-]{43}", token)


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("strs_abc") == hashlib.sha256(b"strs_abc").hexdigest()


def test_ensure_user_creates_once_and_keeps_the_role(users: Users) -> None:
    alice = users.ensure_user("alice")
    assert (alice.name, alice.role, alice.max_trials) == ("alice", Role.USER, None)
    assert users.ensure_user("alice") == alice
    with pytest.raises(ValueError, match="role user, not admin"):
        users.ensure_user("alice", Role.ADMIN)
    quota = users.ensure_user("alice", max_trials=7)
    assert (quota.id, quota.max_trials) == (alice.id, 7)
    assert users.ensure_user("alice").max_trials == 7  # None leaves the quota alone
    worker = users.ensure_user("agent-1", Role.WORKER)
    assert worker.role is Role.WORKER and worker.id != alice.id
    with pytest.raises(ValueError, match="1 to 200"):
        users.ensure_user("")
    with pytest.raises(ValueError, match="max_trials"):
        users.ensure_user("carol", max_trials=0)


def test_tokens_authenticate_and_only_their_hash_is_stored(users: Users, engine: Engine) -> None:
    token = users.create_token("alice", label="laptop")
    other = users.create_token("alice")
    worker_token = users.create_token("agent-1", Role.WORKER)
    alice = users.authenticate(token)
    assert alice is not None and alice.name == "alice" and alice.role is Role.USER
    assert users.authenticate(other) == alice
    worker = users.authenticate(worker_token)
    assert worker is not None and worker.role is Role.WORKER
    assert users.authenticate("strs_unknown") is None
    assert users.authenticate("") is None
    assert users.authenticate(token + "x") is None
    with engine.connect() as connection:
        stored = connection.execute(select(Token.token_hash, Token.label)).all()
    assert {row.token_hash for row in stored} == {
        hash_token(t) for t in (token, other, worker_token)
    }
    assert "laptop" in {row.label for row in stored}
    assert all(token not in row.token_hash for row in stored)


def test_bootstrap_makes_an_idempotent_admin_token(users: Users) -> None:
    token = new_token()
    admin = users.bootstrap(token)
    assert (admin.name, admin.role) == ("admin", Role.ADMIN)
    assert users.bootstrap(token) == admin
    assert users.authenticate(token) == admin
    second = new_token()
    assert users.bootstrap(second) == admin  # a new bootstrap token is added, the old one kept
    assert users.authenticate(token) == admin
    alice_token = users.create_token("alice")
    with pytest.raises(ValueError, match="belongs to user 'alice'"):
        users.bootstrap(alice_token)
    with pytest.raises(ValueError, match="empty"):
        users.bootstrap("")


def test_bootstrap_of_a_worker_token(users: Users) -> None:
    token = new_token()
    agent = users.bootstrap(token, "agent", Role.WORKER)
    assert (agent.name, agent.role) == ("agent", Role.WORKER)
    assert users.bootstrap(token, "agent", Role.WORKER) == agent  # every API start repeats it
    assert users.authenticate(token) == agent
    with pytest.raises(ValueError, match="belongs to user 'agent'"):
        users.bootstrap(token)  # the same secret cannot also be the admin's


def test_bootstrap_refuses_a_non_admin_user_named_admin(users: Users) -> None:
    users.ensure_user("admin")
    with pytest.raises(ValueError, match="role user"):
        users.bootstrap(new_token())


def test_concurrent_ensure_user_and_bootstrap(database_url: str, users: Users) -> None:
    token = new_token()
    seen: list[int] = []

    def starter(i: int) -> None:  # several API processes starting at once
        engine = make_engine(database_url)
        try:
            mine = Users(engine)
            seen.append(mine.bootstrap(token).id)
            seen.append(mine.ensure_user("bob").id)
        finally:
            engine.dispose()

    run_threads(6, starter)
    admin = users.authenticate(token)
    bob = users.ensure_user("bob")
    assert admin is not None
    assert set(seen) == {admin.id, bob.id}
