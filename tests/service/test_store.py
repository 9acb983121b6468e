"""The contract of ``service.store.JobStore``, run on SQLite and on PostgreSQL.

Leases expire by moving the fake clock; concurrency tests use real threads, each with its own
engine (as separate API processes would), against the same database.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from service.db import make_engine
from service.errors import Conflict, IdempotencyMismatch, NotFound
from service.records import EventRecord, JobRecord, UserRecord
from service.states import FINAL, JobState, Role
from service.store import JobStore, is_lease_expiry, spec_hash, utcnow
from service.users import Users
from tests.service.conftest import LEASE_SECONDS, MAX_ATTEMPTS, FakeClock

SPEC: dict[str, Any] = {
    "version": 1,
    "model": "digits_cnn",
    "dataset": "digits",
    "target_sparsity": 0.9,
    "search": {"max_trials": 4, "s_init": [-5.0, -3.2]},
}


def spec(n: int = 0) -> dict[str, Any]:
    return {**SPEC, "seed": n}


def submit(store: JobStore, clock: FakeClock, owner: UserRecord, n: int = 0) -> JobRecord:
    """Submit one job, one second after the previous one (so the order is unambiguous)."""
    clock.advance(1)
    job, created = store.create_job(owner, spec(n))
    assert created
    return job


def states_of(store: JobStore, job_id: str) -> list[tuple[JobState | None, JobState]]:
    return [(event.from_state, event.to_state) for event in store.events(job_id)]


# --- submission and reading -------------------------------------------------------------------


def test_create_job_is_queued_with_utc_times_and_an_event(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job, created = store.create_job(alice, SPEC)
    assert created
    assert len(job.id) == 32
    assert job.owner == "alice"
    assert job.state is JobState.QUEUED
    assert job.spec == SPEC
    assert (job.progress, job.result, job.error) == (None, None, None)
    assert (job.attempts, job.cancel_requested) == (0, False)
    assert job.created_at == job.updated_at == clock()
    assert job.created_at.tzinfo is not None
    assert job.created_at.utcoffset() == timedelta(0)
    assert (job.started_at, job.finished_at, job.lease_id, job.lease_expires_at) == (
        None,
        None,
        None,
        None,
    )
    assert store.get_job(job.id, alice) == job
    assert states_of(store, job.id) == [(None, JobState.QUEUED)]


def test_spec_round_trips_exactly(store: JobStore, alice: UserRecord) -> None:
    odd = {**SPEC, "note": "λ ∈ [1e-5, 0.1] — ünïcode", "nested": {"a": [1, 2.5, None, True]}}
    job, _ = store.create_job(alice, odd)
    assert store.get_job(job.id, alice).spec == odd


def test_times_from_another_time_zone_are_stored_as_utc(engine: Engine, alice: UserRecord) -> None:
    from datetime import timezone

    local = datetime(2026, 3, 1, 15, 30, tzinfo=timezone(timedelta(hours=5)))
    store = JobStore(engine, lease_seconds=5, max_attempts=1, clock=lambda: local)
    job, _ = store.create_job(alice, SPEC)
    assert job.created_at == local
    assert job.created_at.tzinfo == UTC
    assert job.created_at.hour == 10


def test_a_naive_clock_is_refused(engine: Engine, alice: UserRecord) -> None:
    store = JobStore(engine, lease_seconds=5, max_attempts=1, clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.create_job(alice, SPEC)


def test_bad_store_settings_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        JobStore(engine, lease_seconds=0, max_attempts=3)
    with pytest.raises(ValueError, match="max_attempts"):
        JobStore(engine, lease_seconds=5, max_attempts=0)


def test_idempotent_create_replays_the_same_job(
    store: JobStore, alice: UserRecord, bob: UserRecord
) -> None:
    first, created = store.create_job(alice, SPEC, idempotency_key="k-1")
    assert created
    again, created_again = store.create_job(alice, dict(SPEC), idempotency_key="k-1")
    assert (again.id, created_again) == (first.id, False)
    # the same key with another body is refused, and names the job
    with pytest.raises(IdempotencyMismatch, match=first.id) as info:
        store.create_job(alice, spec(7), idempotency_key="k-1")
    assert isinstance(info.value, Conflict)
    # keys are per user; no key means a new job each time
    other, created_other = store.create_job(bob, SPEC, idempotency_key="k-1")
    assert created_other and other.id != first.id
    assert store.create_job(alice, SPEC)[0].id != store.create_job(alice, SPEC)[0].id
    assert store.count_by_state()[JobState.QUEUED] == 4


def test_spec_hash_ignores_key_order() -> None:
    assert spec_hash({"a": 1, "b": [1, 2]}) == spec_hash({"b": [1, 2], "a": 1})
    assert spec_hash({"a": 1}) != spec_hash({"a": 2})


def test_jobs_are_visible_to_their_owner_and_admins_only(
    store: JobStore, alice: UserRecord, bob: UserRecord, admin: UserRecord, users: Users
) -> None:
    job, _ = store.create_job(alice, SPEC)
    assert store.get_job(job.id, admin).id == job.id
    worker = users.ensure_user("agent-1", Role.WORKER)
    for stranger in (bob, worker):
        with pytest.raises(NotFound):
            store.get_job(job.id, stranger)
        with pytest.raises(NotFound):
            store.cancel(job.id, stranger)
    with pytest.raises(NotFound, match="nope"):
        store.get_job("nope", admin)
    assert store.get_job(job.id, alice).state is JobState.QUEUED


def test_list_jobs_newest_first_filtered_and_paged(
    store: JobStore, clock: FakeClock, alice: UserRecord, bob: UserRecord, admin: UserRecord
) -> None:
    mine = [submit(store, clock, alice, n) for n in range(5)]
    theirs = submit(store, clock, bob, 99)
    store.cancel(mine[1].id, alice)
    store.claim("agent")  # the oldest queued: mine[0]

    items, total = store.list_jobs(alice)
    assert total == 5
    assert [job.id for job in items] == [job.id for job in reversed(mine)]

    page, total = store.list_jobs(alice, limit=2, offset=1)
    assert total == 5
    assert [job.id for job in page] == [mine[3].id, mine[2].id]
    assert store.list_jobs(alice, limit=2, offset=10) == ([], 5)

    queued, total = store.list_jobs(alice, states=[JobState.QUEUED])
    assert total == 3
    assert {job.id for job in queued} == {mine[2].id, mine[3].id, mine[4].id}
    done, total = store.list_jobs(alice, states=[JobState.CANCELLED, JobState.RUNNING])
    assert total == 2
    assert [job.state for job in done] == [JobState.CANCELLED, JobState.RUNNING]
    assert store.list_jobs(alice, states=[JobState.FAILED]) == ([], 0)

    everything, total = store.list_jobs(admin)
    assert total == 6
    assert everything[0].id == theirs.id
    assert store.list_jobs(bob)[1] == 1
    with pytest.raises(ValueError, match="limit"):
        store.list_jobs(alice, limit=-1)


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_a_queued_job_finishes_it_at_once(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    clock.advance(3)
    cancelled = store.cancel(job.id, alice)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at == clock()
    assert states_of(store, job.id) == [(None, JobState.QUEUED), (JobState.QUEUED, "cancelled")]
    assert store.claim("agent") is None
    with pytest.raises(Conflict, match="already cancelled"):
        store.cancel(job.id, alice)


def test_cancel_a_running_job_asks_its_agent(
    store: JobStore, clock: FakeClock, alice: UserRecord, admin: UserRecord
) -> None:
    job = submit(store, clock, alice)
    lease = store.claim("agent")
    assert lease is not None
    assert store.heartbeat(job.id, lease.lease_id, None)[1] is False
    requested = store.cancel(job.id, admin)
    assert (requested.state, requested.cancel_requested) == (JobState.RUNNING, True)
    assert store.cancel(job.id, alice).cancel_requested  # asking twice is harmless
    assert store.heartbeat(job.id, lease.lease_id, None)[1] is True
    finished = store.finish(job.id, lease.lease_id, JobState.CANCELLED, None, None)
    assert finished.state is JobState.CANCELLED
    assert states_of(store, job.id)[-1] == (JobState.RUNNING, JobState.CANCELLED)


# --- claim, heartbeat, finish -------------------------------------------------------------------


def test_claim_takes_the_oldest_queued_job(
    store: JobStore, clock: FakeClock, alice: UserRecord, bob: UserRecord
) -> None:
    assert store.claim("agent") is None
    jobs = [submit(store, clock, owner, n) for n, owner in enumerate([bob, alice, bob])]
    claimed = []
    for _ in jobs:
        lease = store.claim("host-1")
        assert lease is not None
        claimed.append(lease.job.id)
    assert claimed == [job.id for job in jobs]
    assert store.claim("host-1") is None


def test_claim_starts_the_job_under_a_lease(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    clock.advance(2)
    lease = store.claim("host-1")
    assert lease is not None
    assert lease.attempt == 1
    assert lease.lease_seconds == LEASE_SECONDS
    assert lease.expires_at == clock() + timedelta(seconds=LEASE_SECONDS)
    running = lease.job
    assert running.id == job.id
    assert running.state is JobState.RUNNING
    assert (running.attempts, running.lease_id, running.lease_agent) == (
        1,
        lease.lease_id,
        "host-1",
    )
    assert running.started_at == clock()
    assert running.lease_expires_at == lease.expires_at
    assert store.events(job.id)[-1] == EventRecord(
        job.id, clock(), JobState.QUEUED, JobState.RUNNING, "claimed (attempt 1)", "host-1"
    )


def test_heartbeat_extends_the_lease_and_stores_progress(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    submit(store, clock, alice)
    lease = store.claim("host-1")
    assert lease is not None
    clock.advance(LEASE_SECONDS - 1)
    progress = {"trials_done": 1, "best": {"sparsity": 0.9}}
    expires, cancel = store.heartbeat(lease.job.id, lease.lease_id, progress)
    assert (expires, cancel) == (clock() + timedelta(seconds=LEASE_SECONDS), False)
    clock.advance(LEASE_SECONDS - 1)  # past the first expiry, within the extended one
    store.heartbeat(lease.job.id, lease.lease_id, None)  # None keeps the stored progress
    assert store.reap_expired() == 0
    assert len(store.events(lease.job.id)) == 2  # heartbeats are no change of state
    stored = store.get_job(lease.job.id, alice)
    assert stored.progress == progress
    assert stored.updated_at == clock()


def test_heartbeat_with_a_lost_lease_conflicts(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    lease = store.claim("host-1")
    assert lease is not None
    with pytest.raises(Conflict, match="another lease"):
        store.heartbeat(job.id, "not-my-lease", None)
    clock.advance(LEASE_SECONDS)
    with pytest.raises(Conflict, match="expired"):
        store.heartbeat(job.id, lease.lease_id, {"late": True})
    with pytest.raises(Conflict, match="does not exist"):
        store.heartbeat("missing", lease.lease_id, None)


def test_finish_is_final_and_a_retry_answers_the_same(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    lease = store.claim("host-1")
    assert lease is not None
    clock.advance(5)
    result = {"reached": True, "best": {"sparsity": 0.901, "budget": [0.5, 0.9]}}
    done = store.finish(job.id, lease.lease_id, JobState.SUCCEEDED, result, None)
    assert (done.state, done.result, done.error) == (JobState.SUCCEEDED, result, None)
    assert done.finished_at == clock()
    assert done.lease_expires_at is None
    clock.advance(5)
    assert store.finish(job.id, lease.lease_id, JobState.SUCCEEDED, result, None) == done
    # any other change of a finished job is refused
    with pytest.raises(Conflict, match="already succeeded"):
        store.finish(job.id, lease.lease_id, JobState.FAILED, None, "boom")
    with pytest.raises(Conflict):
        store.finish(job.id, lease.lease_id, JobState.SUCCEEDED, {"other": 1}, None)
    with pytest.raises(Conflict):
        store.finish(job.id, "another-lease", JobState.SUCCEEDED, result, None)
    with pytest.raises(Conflict):
        store.heartbeat(job.id, lease.lease_id, None)
    with pytest.raises(Conflict):
        store.release(job.id, lease.lease_id)
    with pytest.raises(Conflict, match="already succeeded"):
        store.cancel(job.id, alice)
    clock.advance(LEASE_SECONDS * 10)
    assert store.reap_expired() == 0
    assert store.get_job(job.id, alice) == done
    assert [e.to_state for e in store.events(job.id)].count(JobState.SUCCEEDED) == 1


def test_finish_needs_a_final_state_and_the_lease(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    with pytest.raises(Conflict, match="queued"):
        store.finish(job.id, "no-lease", JobState.FAILED, None, "x")
    lease = store.claim("host-1")
    assert lease is not None
    with pytest.raises(Conflict, match="only be finished as one of"):
        store.finish(job.id, lease.lease_id, JobState.QUEUED, None, None)
    with pytest.raises(Conflict, match="another lease"):
        store.finish(job.id, "not-mine", JobState.FAILED, None, "x")
    failed = store.finish(job.id, lease.lease_id, JobState.FAILED, None, "CUDA out of memory")
    assert (failed.state, failed.error) == (JobState.FAILED, "CUDA out of memory")
    assert store.events(job.id)[-1].reason == "CUDA out of memory"


def test_finish_with_an_expired_but_unreaped_lease_is_accepted(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    lease = store.claim("host-1")
    assert lease is not None
    clock.advance(LEASE_SECONDS + 1)  # nobody took the job from this agent yet
    done = store.finish(job.id, lease.lease_id, JobState.UNREACHED, {"reached": False}, None)
    assert done.state is JobState.UNREACHED
    assert store.reap_expired() == 0


# --- release and reaping ------------------------------------------------------------------------


def test_release_requeues_without_counting_the_attempt(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    first = store.claim("host-1")
    assert first is not None
    store.heartbeat(job.id, first.lease_id, {"trials_done": 2})
    released = store.release(job.id, first.lease_id)
    assert (released.state, released.attempts) == (JobState.QUEUED, 0)
    assert (released.lease_id, released.lease_agent, released.lease_expires_at) == (None,) * 3
    assert released.progress == {"trials_done": 2}  # the next agent resumes from there
    with pytest.raises(Conflict):
        store.release(job.id, first.lease_id)
    second = store.claim("host-2")
    assert second is not None
    assert (second.job.id, second.attempt) == (job.id, 1)
    assert second.job.started_at == first.job.started_at
    with pytest.raises(Conflict, match="another lease"):
        store.heartbeat(job.id, first.lease_id, None)
    assert states_of(store, job.id)[1:] == [
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.RUNNING, JobState.QUEUED),
        (JobState.QUEUED, JobState.RUNNING),
    ]


def test_release_after_a_cancel_request_cancels(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    lease = store.claim("host-1")
    assert lease is not None
    store.cancel(job.id, alice)
    released = store.release(job.id, lease.lease_id)
    assert released.state is JobState.CANCELLED
    assert released.finished_at == clock()
    assert store.claim("host-2") is None


def test_an_expired_lease_requeues_with_the_attempt_counted(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    first = store.claim("host-1")
    assert first is not None
    clock.advance(LEASE_SECONDS - 0.5)
    assert store.reap_expired() == 0
    clock.advance(0.5)
    assert store.reap_expired() == 1
    requeued = store.get_job(job.id, alice)
    assert (requeued.state, requeued.attempts, requeued.lease_id) == (JobState.QUEUED, 1, None)
    last = store.events(job.id)[-1]
    assert last.reason == "lease expired (attempt 1, agent host-1)"
    assert is_lease_expiry(last)
    second = store.claim("host-2")
    assert second is not None
    assert second.attempt == 2
    # the first agent cannot touch the job any more
    with pytest.raises(Conflict, match="lease lost"):
        store.heartbeat(job.id, first.lease_id, None)
    with pytest.raises(Conflict, match="lease lost"):
        store.finish(job.id, first.lease_id, JobState.SUCCEEDED, {}, None)
    with pytest.raises(Conflict, match="lease lost"):
        store.release(job.id, first.lease_id)


def test_claim_reaps_expired_leases_first(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    assert store.claim("host-1") is not None
    assert store.claim("host-2") is None
    clock.advance(LEASE_SECONDS)
    lease = store.claim("host-2")
    assert lease is not None
    assert (lease.job.id, lease.attempt, lease.job.lease_agent) == (job.id, 2, "host-2")


def test_a_job_fails_after_max_attempts_with_the_reason(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        lease = store.claim(f"host-{attempt}")
        assert lease is not None
        assert lease.attempt == attempt
        clock.advance(LEASE_SECONDS + 1)
        assert store.reap_expired() == 1
    failed = store.get_job(job.id, alice)
    assert failed.state is JobState.FAILED
    assert failed.error == f"lease expired {MAX_ATTEMPTS} times; last agent host-{MAX_ATTEMPTS}"
    assert failed.finished_at == clock()
    assert store.claim("host-9") is None
    finals = [e for e in store.events(job.id) if e.to_state in FINAL]
    assert len(finals) == 1
    assert finals[0].reason == failed.error


def test_an_expired_lease_with_a_cancel_request_cancels(
    store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    job = submit(store, clock, alice)
    assert store.claim("host-1") is not None
    store.cancel(job.id, alice)
    clock.advance(LEASE_SECONDS)
    assert store.reap_expired() == 1
    cancelled = store.get_job(job.id, alice)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at == clock()
    assert store.claim("host-2") is None


def test_count_by_state_and_the_event_listener(engine: Engine, alice: UserRecord) -> None:
    clock = FakeClock()
    heard: list[EventRecord] = []
    store = JobStore(engine, lease_seconds=5, max_attempts=1, clock=clock, on_event=heard.append)
    assert store.count_by_state() == dict.fromkeys(JobState, 0)
    jobs = [submit(store, clock, alice, n) for n in range(4)]
    store.cancel(jobs[3].id, alice)
    first = store.claim("a")
    second = store.claim("b")
    assert first is not None and second is not None
    store.finish(first.job.id, first.lease_id, JobState.SUCCEEDED, {"ok": 1}, None)
    clock.advance(5)
    assert store.reap_expired() == 1  # max_attempts 1: fails at once
    assert store.count_by_state() == {
        JobState.QUEUED: 1,
        JobState.RUNNING: 0,
        JobState.SUCCEEDED: 1,
        JobState.UNREACHED: 0,
        JobState.FAILED: 1,
        JobState.CANCELLED: 1,
    }
    recorded = [event for job in jobs for event in store.events(job.id)]
    assert sorted(heard, key=repr) == sorted(recorded, key=repr)
    assert [is_lease_expiry(e) for e in heard].count(True) == 1


# --- concurrency ------------------------------------------------------------------------------


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_concurrent_claimers_never_share_a_job(
    database_url: str, store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    jobs = {submit(store, clock, alice, n).id for n in range(40)}
    claimed: list[list[str]] = [[] for _ in range(6)]

    def claimer(i: int) -> None:
        engine = make_engine(database_url)  # one engine each, like separate processes
        try:
            mine = JobStore(engine, lease_seconds=60, max_attempts=3, clock=utcnow)
            while (lease := mine.claim(f"agent-{i}")) is not None:
                assert lease.attempt == 1
                claimed[i].append(lease.job.id)
        finally:
            engine.dispose()

    run_threads(6, claimer)
    every = [job_id for ids in claimed for job_id in ids]
    assert Counter(every).most_common(1)[0][1] == 1
    assert set(every) == jobs
    assert store.count_by_state()[JobState.RUNNING] == 40
    for job_id in jobs:
        assert states_of(store, job_id) == [(None, "queued"), ("queued", "running")]


def test_concurrent_submissions_of_one_key_create_one_job(
    database_url: str, engine: Engine, alice: UserRecord
) -> None:
    outcomes: list[tuple[str, bool]] = []

    def submitter(i: int) -> None:
        own = make_engine(database_url)
        try:
            job, created = JobStore(own, lease_seconds=5, max_attempts=3).create_job(
                alice, SPEC, idempotency_key="retry-me"
            )
            outcomes.append((job.id, created))
        finally:
            own.dispose()

    run_threads(8, submitter)
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert [created for _, created in outcomes].count(True) == 1
    store = JobStore(engine, lease_seconds=5, max_attempts=3)
    assert store.count_by_state()[JobState.QUEUED] == 1


def test_every_job_reaches_a_final_state_exactly_once_under_contention(
    database_url: str, store: JobStore, clock: FakeClock, alice: UserRecord
) -> None:
    """Agents that finish, release, crash or are slow race with cancels and reapers."""
    jobs = [submit(store, clock, alice, n).id for n in range(30)]
    user = alice

    def actor(i: int) -> None:
        rng = random.Random(i)
        engine = make_engine(database_url)
        mine = JobStore(engine, lease_seconds=LEASE_SECONDS, max_attempts=2, clock=clock)
        try:
            for step in range(40):
                roll = rng.random()
                if i == 0:  # the user cancels, a bit
                    with contextlib.suppress(Conflict):
                        mine.cancel(rng.choice(jobs), user)
                elif i == 1:  # time passes; leases expire; the reaper runs
                    if step % 4 == 0:
                        clock.advance(LEASE_SECONDS / 2)
                    mine.reap_expired()
                elif (lease := mine.claim(f"agent-{i}")) is not None:
                    try:
                        mine.heartbeat(lease.job.id, lease.lease_id, {"step": step})
                        if roll < 0.4:
                            state = rng.choice(sorted(FINAL))
                            mine.finish(lease.job.id, lease.lease_id, state, {"i": i}, None)
                        elif roll < 0.6:
                            mine.release(lease.job.id, lease.lease_id)
                        # else: the agent "crashes"; its lease will expire
                    except Conflict:
                        pass  # lost the lease to the reaper meanwhile: stop, as an agent must
        finally:
            engine.dispose()

    run_threads(6, actor)
    # drain: whatever is left is run to the end by one well-behaved agent
    for _ in range(200):
        clock.advance(LEASE_SECONDS * 2)
        lease = store.claim("drain")
        if lease is None and store.count_by_state()[JobState.RUNNING] == 0:
            break
        if lease is not None:
            store.finish(lease.job.id, lease.lease_id, JobState.SUCCEEDED, {}, None)

    admin = UserRecord(0, "root", Role.ADMIN, None)
    for job_id in jobs:
        job = store.get_job(job_id, admin)
        events = store.events(job_id)
        assert job.state in FINAL
        assert [e.to_state in FINAL for e in events].count(True) == 1, events
        assert events[-1].to_state is job.state
        # the events form one chain of transitions, starting from the submission
        assert events[0].from_state is None
        for before, after in itertools.pairwise(events):
            assert after.from_state is before.to_state
        assert job.attempts <= 3
