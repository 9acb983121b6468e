"""Users and their bearer tokens (stored only as SHA-256 hashes).

Tokens are random (``strs_`` + 43 URL-safe characters); the database keeps their SHA-256, so a
leaked database does not leak usable tokens, and lookups are an index probe on the hash.
Creating a user or a token is safe when several processes do it at once: the unique constraints
decide, and the loser reads the winner's row.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from service.db import READ_ONLY
from service.models import Token, User
from service.records import UserRecord
from service.states import Role

TOKEN_PREFIX = "strs_"
BOOTSTRAP_ADMIN = "admin"
BOOTSTRAP_WORKER = "agent"


def new_token() -> str:
    """A fresh random token (shown once; only its hash is stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def _user_record(connection: Connection, name: str) -> UserRecord | None:
    row = connection.execute(
        select(User.id, User.name, User.role, User.max_trials).where(User.name == name)
    ).one_or_none()
    if row is None:
        return None
    return UserRecord(id=row.id, name=row.name, role=Role(row.role), max_trials=row.max_trials)


class Users:
    """Create users and tokens, and tell which user a token belongs to."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def ensure_user(
        self, name: str, role: Role = Role.USER, max_trials: int | None = None
    ) -> UserRecord:
        """The user ``name``, created when missing.

        An existing user keeps its role (asking for another one is a ValueError); a given
        ``max_trials`` replaces its quota.
        """
        role = Role(role)
        if not name or len(name) > 200:
            raise ValueError(f"a user name has 1 to 200 characters, not {len(name)}")
        if max_trials is not None and max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, not {max_trials}")
        for _ in range(2):
            try:
                with self._engine.begin() as connection:
                    user = _user_record(connection, name)
                    if user is None:
                        connection.execute(
                            insert(User).values(
                                name=name,
                                role=role.value,
                                max_trials=max_trials,
                                created_at=datetime.now(UTC),
                            )
                        )
                    elif user.role is not role:
                        raise ValueError(
                            f"user {name!r} exists with role {user.role.value}, not {role.value}"
                        )
                    elif max_trials is not None and user.max_trials != max_trials:
                        connection.execute(
                            update(User).where(User.id == user.id).values(max_trials=max_trials)
                        )
                    created = _user_record(connection, name)
                    assert created is not None
                    return created
            except IntegrityError:
                continue  # another process created it meanwhile: read it on the next pass
        raise RuntimeError(f"could not create or read user {name!r}")

    def create_token(self, name: str, role: Role = Role.USER, label: str = "") -> str:
        """A new token for user ``name`` (created with ``role`` when missing); shown only here."""
        user = self.ensure_user(name, role)
        token = new_token()
        self._add_token(user, token, label)
        return token

    def _add_token(self, user: UserRecord, token: str, label: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                insert(Token).values(
                    user_id=user.id,
                    token_hash=hash_token(token),
                    label=label[:200],
                    created_at=datetime.now(UTC),
                )
            )

    def authenticate(self, token: str) -> UserRecord | None:
        """The user owning ``token``, or None for an unknown one."""
        if not token:
            return None
        with self._engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            row = connection.execute(
                select(User.id, User.name, User.role, User.max_trials)
                .join(Token, Token.user_id == User.id)
                .where(Token.token_hash == hash_token(token))
            ).one_or_none()
        if row is None:
            return None
        return UserRecord(id=row.id, name=row.name, role=Role(row.role), max_trials=row.max_trials)

    def bootstrap(
        self, token: str, name: str = BOOTSTRAP_ADMIN, role: Role = Role.ADMIN
    ) -> UserRecord:
        """Make ``token`` a token of user ``name`` with ``role`` (idempotent; used at start-up).

        Deployments hand the API its first tokens this way, from their secrets: the admin's
        (``STRSEARCH_BOOTSTRAP_TOKEN``) and the agents' (``STRSEARCH_WORKER_TOKEN``). A token
        that already belongs to another user is a ValueError.
        """
        if not token:
            raise ValueError("the bootstrap token is empty")
        user = self.ensure_user(name, role)
        for _ in range(2):
            owner = self.authenticate(token)
            if owner is not None:
                if owner.id != user.id:
                    raise ValueError(f"the bootstrap token already belongs to user {owner.name!r}")
                return user
            try:
                self._add_token(user, token, "bootstrap")
            except IntegrityError:
                continue  # another process added it meanwhile: check whose it is
            return user
        raise RuntimeError("could not store the bootstrap token")
