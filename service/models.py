"""The database schema as typed SQLAlchemy 2.x ORM classes (the migrations create the same).

Four tables: ``users`` and their hashed ``tokens``; ``jobs`` (the queue, with the lease columns
the agents compare-and-set against); ``job_events``, one row per change of a job's state, which
is the audit trail that proves every job reaches a final state exactly once. Datetimes go
through :class:`UTCDateTime`, so they come back UTC-aware on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: deterministic constraint names, so migrations and the ORM agree on every backend
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATE_LENGTH = 16
NAME_LENGTH = 200
KEY_LENGTH = 200


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC text (which also sorts and compares correctly) and made aware again when read. Naive
    datetimes are refused on the way in: they are almost always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the service stores UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention above."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (read by SQLAlchemy, never mutated)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(none_as_null=True),
    }


class User(Base):
    """A person or an agent; ``max_trials`` overrides the service-wide quota when set."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin', 'worker')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(STATE_LENGTH))
    max_trials: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]


class Token(Base):
    """A bearer token, stored only as its SHA-256 (hex)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(NAME_LENGTH), server_default="")
    created_at: Mapped[datetime]


class Job(Base):
    """One job: its spec, where it is, and the lease of the agent running it."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key"),
        Index(None, "state", "created_at"),
        Index(None, "owner_id", "created_at"),
        CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'unreached', 'failed', 'cancelled')",
            name="state",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    spec: Mapped[dict[str, Any]]
    spec_version: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    progress: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=false())
    lease_id: Mapped[str | None] = mapped_column(String(32))
    lease_agent: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobEvent(Base):
    """One change of a job's state (``from_state`` is NULL when the job is created)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    to_state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    reason: Mapped[str | None] = mapped_column(Text)
    agent: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
