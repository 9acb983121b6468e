"""Plain frozen records returned by the store, so no ORM object (or session) leaks out of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.states import JobState, Role


@dataclass(frozen=True)
class UserRecord:
    """A user: its name, role and (optional) own quota on ``search.max_trials``."""

    id: int
    name: str
    role: Role
    max_trials: int | None


@dataclass(frozen=True)
class JobRecord:
    """One job as stored; datetimes are UTC-aware."""

    id: str
    owner: str
    state: JobState
    spec: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_id: str | None
    lease_agent: str | None
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class Lease:
    """A claimed job and the lease under which the agent runs it (``attempt`` counts from 1)."""

    job: JobRecord
    lease_id: str
    lease_seconds: float
    expires_at: datetime
    attempt: int


@dataclass(frozen=True)
class EventRecord:
    """One change of a job's state (``from_state`` is None for the creation event)."""

    job_id: str
    at: datetime
    from_state: JobState | None
    to_state: JobState
    reason: str | None
    agent: str | None
