"""Job states and user roles: the small closed vocabularies shared by the store and the API."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life (DESIGN.md §4): queued -> running -> one of the final states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    UNREACHED = "unreached"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: states a job never leaves
FINAL: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.UNREACHED, JobState.FAILED, JobState.CANCELLED}
)


class Role(StrEnum):
    """What a token's user may do: ``user`` own jobs, ``admin`` all, ``worker`` agent routes."""

    USER = "user"
    ADMIN = "admin"
    WORKER = "worker"
