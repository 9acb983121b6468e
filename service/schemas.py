"""Request and response bodies of the REST API (docs/api.md), as pydantic models.

Responses are built from the store's records with :func:`job_out`; times are UTC and serialize
as ISO 8601 with ``Z``. Request bodies of the agent routes refuse unknown fields, like the spec.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.records import JobRecord, Lease
from service.states import JobState
from service.validation import storable_json, storable_text


def _as_utc(value: datetime) -> datetime:
    """UTC-aware (a naive time from the database is taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
#: free-form JSON from an agent that the databases can store (no NUL, NaN, deep nesting)
StorableJson = Annotated[dict[str, Any] | None, AfterValidator(storable_json)]
#: a string without NUL characters (PostgreSQL text cannot hold them)
StorableText = Annotated[str, AfterValidator(storable_text)]

FinalState = Literal["succeeded", "unreached", "failed", "cancelled"]

LeaseId = Annotated[
    StorableText, Field(min_length=1, max_length=200, description="The lease id from the claim.")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobOut(BaseModel):
    """A job (docs/api.md, "The job")."""

    id: str
    owner: str
    state: JobState
    spec: dict[str, Any]
    progress: dict[str, Any] | None = Field(
        description="Last progress reported by the agent; null until it first reports."
    )
    result: dict[str, Any] | None = Field(description="Set when the job finishes.")
    error: str | None = Field(description="Why the job failed.")
    attempts: int = Field(description="How many times the job was claimed (leases counted).")
    cancel_requested: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class JobPage(BaseModel):
    """One page of ``GET /jobs`` (items leave out ``progress.trials`` and ``result.trials``)."""

    items: list[JobOut]
    total: int = Field(description="Jobs matching the filter, over all pages.")
    limit: int
    offset: int


class ClaimIn(_Request):
    """``POST /agent/claim``."""

    agent: Annotated[StorableText, Field(min_length=1, max_length=200)] = Field(
        description="Name of the claiming agent."
    )


class ClaimOut(BaseModel):
    """A job leased to the claiming agent."""

    job: JobOut
    lease_id: str
    lease_seconds: float
    lease_expires_at: UtcDatetime
    attempt: int = Field(description="1 on the first claim; more means resume the experiment.")


class HeartbeatIn(_Request):
    """``POST /agent/jobs/{id}/heartbeat``."""

    lease_id: LeaseId
    progress: StorableJson = Field(None, description="The job's progress; null keeps the last one.")


class HeartbeatOut(BaseModel):
    """The extended lease; ``cancel`` asks the agent to stop the job."""

    lease_expires_at: UtcDatetime
    cancel: bool


class FinishIn(_Request):
    """``POST /agent/jobs/{id}/finish``."""

    lease_id: LeaseId
    state: FinalState
    result: StorableJson = None
    error: StorableText | None = None


class ReleaseIn(_Request):
    """``POST /agent/jobs/{id}/release``."""

    lease_id: LeaseId


class Status(BaseModel):
    """``/health`` and ``/ready``."""

    status: str


def _without_trials(part: dict[str, Any] | None) -> dict[str, Any] | None:
    if part is None:
        return None
    return {key: value for key, value in part.items() if key != "trials"}


def job_out(job: JobRecord, *, summary: bool = False) -> JobOut:
    """The API view of a job; ``summary`` leaves out the per-trial lists (for ``GET /jobs``)."""
    progress, result = job.progress, job.result
    if summary:
        progress, result = _without_trials(progress), _without_trials(result)
    return JobOut(
        id=job.id,
        owner=job.owner,
        state=job.state,
        spec=job.spec,
        progress=progress,
        result=result,
        error=job.error,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def claim_out(lease: Lease) -> ClaimOut:
    """The answer to a successful claim."""
    return ClaimOut(
        job=job_out(lease.job),
        lease_id=lease.lease_id,
        lease_seconds=lease.lease_seconds,
        lease_expires_at=lease.expires_at,
        attempt=lease.attempt,
    )
