"""The job queue: submission, visibility, cancellation, and the lease protocol of the agents.

Every change of a job's state is a compare-and-set: an ``UPDATE ... WHERE state = <seen> AND
lease_id = <seen>`` whose row count says whether this caller won. A caller that lost re-reads the
job and decides again (or gets :class:`Conflict`), so concurrent API processes, agents and
reapers never apply two transitions from the same state, a finished job never changes again, and
each change writes exactly one ``job_events`` row. On SQLite every write transaction is
``BEGIN IMMEDIATE`` (see ``service/db.py``), which serializes writers; on PostgreSQL the claim
also skips rows locked by another claimer (``FOR UPDATE SKIP LOCKED``).

Time comes from an injectable clock so tests expire leases by moving it, not by sleeping.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Row, func, insert, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from service.db import READ_ONLY
from service.errors import Conflict, IdempotencyMismatch, NotFound
from service.models import Job, JobEvent, User, UTCDateTime
from service.records import EventRecord, JobRecord, Lease, UserRecord
from service.states import FINAL, JobState, Role

#: reason prefix of the events written when a lease expires (``is_lease_expiry``)
LEASE_EXPIRED = "lease expired"
#: how often a compare-and-set that lost to a concurrent writer is re-decided before giving up
_RETRIES = 20

EventListener = Callable[[EventRecord], None]


def utcnow() -> datetime:
    """The current time, UTC-aware (the store's default clock)."""
    return datetime.now(UTC)


def spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 of the spec's canonical JSON: tells a replayed submission from a different one."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_lease_expiry(event: EventRecord) -> bool:
    """True for the event written when the reaper takes a job from an agent whose lease ran out."""
    return event.from_state is JobState.RUNNING and (event.reason or "").startswith(LEASE_EXPIRED)


_JOB_COLUMNS = (
    Job.id,
    User.name.label("owner"),
    Job.state,
    Job.spec,
    Job.progress,
    Job.result,
    Job.error,
    Job.attempts,
    Job.cancel_requested,
    Job.created_at,
    Job.updated_at,
    Job.started_at,
    Job.finished_at,
    Job.lease_id,
    Job.lease_agent,
    Job.lease_expires_at,
)


def _job_record(row: Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id,
        owner=row.owner,
        state=JobState(row.state),
        spec=row.spec,
        progress=row.progress,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        cancel_requested=bool(row.cancel_requested),
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_id=row.lease_id,
        lease_agent=row.lease_agent,
        lease_expires_at=row.lease_expires_at,
    )


def _visible_to(viewer: UserRecord) -> ColumnElement[bool]:
    """Admins see every job; anybody else only their own."""
    if viewer.role is Role.ADMIN:
        return literal(True)
    return Job.owner_id == viewer.id


def _at(value: datetime) -> Any:
    """A datetime bound with the UTC type (for places where SQL cannot infer the column type)."""
    return literal(value, type_=UTCDateTime())


class JobStore:
    """The jobs table behind a small, transactional API (see docs/api.md for the protocol)."""

    def __init__(
        self,
        engine: Engine,
        *,
        lease_seconds: float,
        max_attempts: int,
        clock: Callable[[], datetime] = utcnow,
        on_event: EventListener | None = None,
    ) -> None:
        """``on_event`` (optional) is called after each committed change of state (metrics)."""
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, not {lease_seconds}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
        self._engine = engine
        self.lease_seconds = float(lease_seconds)
        self.max_attempts = max_attempts
        self._clock = clock
        self._on_event = on_event

    # --- plumbing ------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    @contextmanager
    def _write(self) -> Iterator[tuple[Connection, list[EventRecord]]]:
        """A write transaction; the events it records are announced once it has committed."""
        events: list[EventRecord] = []
        with self._engine.begin() as connection:
            yield connection, events
        if self._on_event is not None:
            for event in events:
                self._on_event(event)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            yield connection

    @staticmethod
    def _jobs() -> Any:
        return select(*_JOB_COLUMNS).join(User, Job.owner_id == User.id)

    def _load(self, connection: Connection, job_id: str) -> JobRecord | None:
        row = connection.execute(self._jobs().where(Job.id == job_id)).one_or_none()
        return None if row is None else _job_record(row)

    def _must_load(self, connection: Connection, job_id: str) -> JobRecord:
        job = self._load(connection, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    @staticmethod
    def _record_event(
        connection: Connection,
        events: list[EventRecord],
        job_id: str,
        at: datetime,
        from_state: JobState | None,
        to_state: JobState,
        reason: str | None = None,
        agent: str | None = None,
    ) -> None:
        connection.execute(
            insert(JobEvent).values(
                job_id=job_id,
                at=at,
                from_state=None if from_state is None else from_state.value,
                to_state=to_state.value,
                reason=reason,
                agent=agent,
            )
        )
        events.append(EventRecord(job_id, at, from_state, to_state, reason, agent))

    @staticmethod
    def _cas(
        connection: Connection, job_id: str, *where: ColumnElement[bool], **values: Any
    ) -> bool:
        """``UPDATE jobs SET values WHERE id = job_id AND where``; True when this caller won."""
        result = connection.execute(update(Job).where(Job.id == job_id, *where).values(**values))
        return result.rowcount == 1

    # --- users' side -----------------------------------------------------------------------------

    def create_job(
        self, owner: UserRecord, spec: dict[str, Any], idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """Queue a validated spec; with a key, a repeat returns the first job (``created`` False).

        The same key with a different spec raises :class:`IdempotencyMismatch`. Concurrent
        submissions of one key race on the unique ``(owner_id, idempotency_key)``; the loser
        reads the winner's row.
        """
        request_hash = spec_hash(spec)
        if idempotency_key is not None:
            found = self._by_key(owner, idempotency_key)
            if found is not None:
                return self._replay(found, request_hash, idempotency_key), False
        now = self._now()
        job_id = uuid.uuid4().hex
        version = spec.get("version", 1)
        try:
            with self._write() as (connection, events):
                connection.execute(
                    insert(Job).values(
                        id=job_id,
                        owner_id=owner.id,
                        state=JobState.QUEUED.value,
                        spec=spec,
                        spec_version=version if isinstance(version, int) else 1,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                        attempts=0,
                        cancel_requested=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
                self._record_event(
                    connection, events, job_id, now, None, JobState.QUEUED, "submitted"
                )
                job = self._must_load(connection, job_id)
        except IntegrityError:
            if idempotency_key is None:
                raise
            found = self._by_key(owner, idempotency_key)
            if found is None:
                raise
            return self._replay(found, request_hash, idempotency_key), False
        return job, True

    def _by_key(self, owner: UserRecord, key: str) -> tuple[JobRecord, str] | None:
        with self._read() as connection:
            row = connection.execute(
                self._jobs()
                .add_columns(Job.request_hash)
                .where(Job.owner_id == owner.id, Job.idempotency_key == key)
            ).one_or_none()
        return None if row is None else (_job_record(row), row.request_hash)

    @staticmethod
    def _replay(found: tuple[JobRecord, str], request_hash: str, key: str) -> JobRecord:
        job, stored_hash = found
        if stored_hash != request_hash:
            raise IdempotencyMismatch(
                f"Idempotency-Key {key!r} was already used for job {job.id} with a different body"
            )
        return job

    def get_job(self, job_id: str, viewer: UserRecord) -> JobRecord:
        """The job, if the viewer may see it; else :class:`NotFound` (no existence leak)."""
        with self._read() as connection:
            row = connection.execute(
                self._jobs().where(Job.id == job_id, _visible_to(viewer))
            ).one_or_none()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job_record(row)

    def list_jobs(
        self,
        viewer: UserRecord,
        states: Sequence[JobState] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """One page of the viewer's jobs (every job for an admin), newest first, and the total."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, not {limit}, {offset}")
        where: list[ColumnElement[bool]] = [_visible_to(viewer)]
        if states:
            where.append(Job.state.in_(sorted({JobState(s).value for s in states})))
        with self._read() as connection:
            total = connection.execute(
                select(func.count()).select_from(Job).where(*where)
            ).scalar_one()
            rows = connection.execute(
                self._jobs()
                .where(*where)
                .order_by(Job.created_at.desc(), Job.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [_job_record(row) for row in rows], int(total)

    def cancel(self, job_id: str, viewer: UserRecord) -> JobRecord:
        """Cancel a queued job at once; ask the agent of a running one to stop; 409 if finished."""
        for _ in range(_RETRIES):
            with self._write() as (connection, events):
                row = connection.execute(
                    select(Job.state, Job.cancel_requested).where(
                        Job.id == job_id, _visible_to(viewer)
                    )
                ).one_or_none()
                if row is None:
                    raise NotFound(f"job {job_id} not found")
                state = JobState(row.state)
                if state in FINAL:
                    raise Conflict(f"job {job_id} is already {state.value}")
                now = self._now()
                if state is JobState.QUEUED:
                    won = self._cas(
                        connection,
                        job_id,
                        Job.state == JobState.QUEUED.value,
                        state=JobState.CANCELLED.value,
                        finished_at=now,
                        updated_at=now,
                    )
                    if won:
                        self._record_event(
                            connection,
                            events,
                            job_id,
                            now,
                            JobState.QUEUED,
                            JobState.CANCELLED,
                            f"cancelled by {viewer.name}",
                        )
                elif row.cancel_requested:
                    won = True
                else:
                    won = self._cas(
                        connection,
                        job_id,
                        Job.state == JobState.RUNNING.value,
                        cancel_requested=True,
                        updated_at=now,
                    )
                if won:
                    return self._must_load(connection, job_id)
        raise Conflict(f"job {job_id} kept changing; try again")

    # --- agents' side ----------------------------------------------------------------------------

    def claim(self, agent: str) -> Lease | None:
        """Lease the oldest queued job to ``agent`` (reaping expired leases first), or None."""
        self.reap_expired()
        while True:
            with self._write() as (connection, events):
                candidate = connection.execute(
                    select(Job.id)
                    .where(Job.state == JobState.QUEUED.value)
                    .order_by(Job.created_at, Job.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).scalar_one_or_none()
                if candidate is None:
                    return None
                now = self._now()
                lease_id = uuid.uuid4().hex
                expires_at = now + timedelta(seconds=self.lease_seconds)
                won = self._cas(
                    connection,
                    candidate,
                    Job.state == JobState.QUEUED.value,
                    state=JobState.RUNNING.value,
                    attempts=Job.attempts + 1,
                    lease_id=lease_id,
                    lease_agent=agent,
                    lease_expires_at=expires_at,
                    started_at=func.coalesce(Job.started_at, _at(now)),
                    updated_at=now,
                )
                if not won:
                    continue  # another claimer took it: try the next oldest
                job = self._must_load(connection, candidate)
                self._record_event(
                    connection,
                    events,
                    candidate,
                    now,
                    JobState.QUEUED,
                    JobState.RUNNING,
                    f"claimed (attempt {job.attempts})",
                    agent,
                )
                return Lease(job, lease_id, self.lease_seconds, expires_at, job.attempts)

    def heartbeat(
        self, job_id: str, lease_id: str, progress: dict[str, Any] | None
    ) -> tuple[datetime, bool]:
        """Extend a live lease (storing ``progress`` when given): ``(expires_at, cancel)``."""
        with self._write() as (connection, _events):
            now = self._now()
            expires_at = now + timedelta(seconds=self.lease_seconds)
            values: dict[str, Any] = {"lease_expires_at": expires_at, "updated_at": now}
            if progress is not None:
                values["progress"] = progress
            won = self._cas(
                connection,
                job_id,
                Job.state == JobState.RUNNING.value,
                Job.lease_id == lease_id,
                Job.lease_expires_at > _at(now),
                **values,
            )
            if not won:
                raise Conflict(self._why_lost(connection, job_id, lease_id, now))
            cancel = connection.execute(
                select(Job.cancel_requested).where(Job.id == job_id)
            ).scalar_one()
        return expires_at, bool(cancel)

    def finish(
        self,
        job_id: str,
        lease_id: str,
        state: JobState,
        result: dict[str, Any] | None,
        error: str | None,
    ) -> JobRecord:
        """Move a running job to a final state under its lease.

        A lease that ran out but was not yet reaped (nobody else holds the job) may still finish.
        Repeating the identical call on a job that lease finished returns the job (a retry after
        a lost answer); anything else is :class:`Conflict`.
        """
        final = JobState(state)
        if final not in FINAL:
            raise Conflict(f"a job can only be finished as one of {_names(FINAL)}, not {final}")
        with self._write() as (connection, events):
            now = self._now()
            agent = connection.execute(
                select(Job.lease_agent).where(Job.id == job_id)
            ).scalar_one_or_none()
            won = self._cas(
                connection,
                job_id,
                Job.state == JobState.RUNNING.value,
                Job.lease_id == lease_id,
                state=final.value,
                result=result,
                error=error,
                finished_at=now,
                updated_at=now,
                lease_expires_at=None,
            )
            if won:
                self._record_event(
                    connection, events, job_id, now, JobState.RUNNING, final, error, agent
                )
                return self._must_load(connection, job_id)
            job = self._load(connection, job_id)
            if (
                job is not None
                and job.state is final
                and job.lease_id == lease_id
                and job.result == result
                and job.error == error
            ):
                return job
            raise Conflict(self._why_lost(connection, job_id, lease_id, now))

    def release(self, job_id: str, lease_id: str) -> JobRecord:
        """Hand a running job back: queued again (attempt not counted), or cancelled if asked."""
        for _ in range(_RETRIES):
            with self._write() as (connection, events):
                now = self._now()
                row = connection.execute(
                    select(Job.state, Job.lease_id, Job.lease_agent, Job.cancel_requested).where(
                        Job.id == job_id
                    )
                ).one_or_none()
                if row is None or row.state != JobState.RUNNING.value or row.lease_id != lease_id:
                    raise Conflict(self._why_lost(connection, job_id, lease_id, now))
                guard = (
                    Job.state == JobState.RUNNING.value,
                    Job.lease_id == lease_id,
                    Job.cancel_requested == row.cancel_requested,
                )
                if row.cancel_requested:
                    target, reason = JobState.CANCELLED, "released after a cancel request"
                    won = self._cas(
                        connection,
                        job_id,
                        *guard,
                        state=target.value,
                        finished_at=now,
                        updated_at=now,
                        lease_expires_at=None,
                    )
                else:
                    target, reason = JobState.QUEUED, "released by the agent"
                    won = self._cas(
                        connection,
                        job_id,
                        *guard,
                        state=target.value,
                        attempts=Job.attempts - 1,
                        lease_id=None,
                        lease_agent=None,
                        lease_expires_at=None,
                        updated_at=now,
                    )
                if won:
                    self._record_event(
                        connection,
                        events,
                        job_id,
                        now,
                        JobState.RUNNING,
                        target,
                        reason,
                        row.lease_agent,
                    )
                    return self._must_load(connection, job_id)
        raise Conflict(f"job {job_id} kept changing; try again")

    def reap_expired(self) -> int:
        """Take back jobs whose lease ran out; returns how many.

        A job whose cancellation was requested becomes ``cancelled``; one that has used up
        ``max_attempts`` becomes ``failed`` with the reason; any other goes back to the queue
        (the expired attempt stays counted).
        """
        reaped = 0
        with self._write() as (connection, events):
            now = self._now()
            rows = connection.execute(
                select(
                    Job.id, Job.lease_id, Job.lease_agent, Job.attempts, Job.cancel_requested
                ).where(Job.state == JobState.RUNNING.value, Job.lease_expires_at <= _at(now))
            ).all()
            for row in rows:
                agent = row.lease_agent
                values: dict[str, Any] = {"updated_at": now, "lease_expires_at": None}
                if row.cancel_requested:
                    target = JobState.CANCELLED
                    reason = f"{LEASE_EXPIRED} (agent {agent}) after a cancel request"
                    values["finished_at"] = now
                elif row.attempts >= self.max_attempts:
                    target = JobState.FAILED
                    reason = f"{LEASE_EXPIRED} {row.attempts} times; last agent {agent}"
                    values.update(finished_at=now, error=reason)
                else:
                    target = JobState.QUEUED
                    reason = f"{LEASE_EXPIRED} (attempt {row.attempts}, agent {agent})"
                    values.update(lease_id=None, lease_agent=None)
                won = self._cas(
                    connection,
                    row.id,
                    Job.state == JobState.RUNNING.value,
                    Job.lease_id == row.lease_id,
                    Job.lease_expires_at <= _at(now),
                    state=target.value,
                    **values,
                )
                if won:
                    reaped += 1
                    self._record_event(
                        connection, events, row.id, now, JobState.RUNNING, target, reason, agent
                    )
        return reaped

    # --- operations ------------------------------------------------------------------------------

    def count_by_state(self) -> dict[JobState, int]:
        """Jobs per state (every state present, zero included)."""
        counts = dict.fromkeys(JobState, 0)
        with self._read() as connection:
            for state, count in connection.execute(
                select(Job.state, func.count()).group_by(Job.state)
            ):
                counts[JobState(state)] = int(count)
        return counts

    def events(self, job_id: str) -> list[EventRecord]:
        """The job's changes of state, oldest first."""
        with self._read() as connection:
            rows = connection.execute(
                select(
                    JobEvent.job_id,
                    JobEvent.at,
                    JobEvent.from_state,
                    JobEvent.to_state,
                    JobEvent.reason,
                    JobEvent.agent,
                )
                .where(JobEvent.job_id == job_id)
                .order_by(JobEvent.id)
            ).all()
        return [
            EventRecord(
                job_id=row.job_id,
                at=row.at,
                from_state=None if row.from_state is None else JobState(row.from_state),
                to_state=JobState(row.to_state),
                reason=row.reason,
                agent=row.agent,
            )
            for row in rows
        ]

    def _why_lost(self, connection: Connection, job_id: str, lease_id: str, now: datetime) -> str:
        """Why an agent's call under ``lease_id`` cannot change the job any more."""
        job = self._load(connection, job_id)
        if job is None:
            return f"lease lost: job {job_id} does not exist"
        if job.state in FINAL:
            return f"lease lost: job {job_id} is already {job.state.value}"
        if job.lease_id != lease_id:
            return f"lease lost: job {job_id} is {job.state.value} under another lease"
        if job.lease_expires_at is not None and job.lease_expires_at <= now:
            return f"lease lost: the lease of job {job_id} expired at {job.lease_expires_at}"
        return f"lease lost: job {job_id} is {job.state.value}"


def _names(states: frozenset[JobState]) -> str:
    return ", ".join(sorted(state.value for state in states))
