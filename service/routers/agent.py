"""`/agent`: the lease protocol between the queue and the agents that run jobs (worker tokens).

Every route but the claim names a lease; the store refuses (`409`) a lease that is no longer
the job's, so an agent that lost its lease can never change the job again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from service.auth import Worker
from service.context import ServicesDep
from service.schemas import (
    ClaimIn,
    ClaimOut,
    FinishIn,
    HeartbeatIn,
    HeartbeatOut,
    JobOut,
    ReleaseIn,
    claim_out,
    job_out,
)
from service.states import JobState
from service.validation import JobId

router = APIRouter(prefix="/agent", tags=["agent"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown token."},
    403: {"description": "Not a worker token."},
}
_LEASE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"description": "No such job."},
    409: {"description": "The lease is no longer this agent's: stop working on the job."},
}


@router.post(
    "/claim",
    response_model=ClaimOut,
    summary="Lease the oldest queued job",
    responses={**_ERRORS, 204: {"description": "No job is queued."}},
)
def claim(worker: Worker, body: ClaimIn, services: ServicesDep) -> ClaimOut | Response:
    """Start the oldest queued job under a new lease (`204` when the queue is empty)."""
    lease = services.store.claim(body.agent)
    if lease is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return claim_out(lease)


@router.post(
    "/jobs/{job_id}/heartbeat",
    summary="Extend a lease and report progress",
    responses=_LEASE_ERRORS,
)
def heartbeat(
    worker: Worker, job_id: JobId, body: HeartbeatIn, services: ServicesDep
) -> HeartbeatOut:
    """Extend the lease; `cancel: true` asks the agent to stop the job."""
    expires_at, cancel = services.store.heartbeat(job_id, body.lease_id, body.progress)
    return HeartbeatOut(lease_expires_at=expires_at, cancel=cancel)


@router.post("/jobs/{job_id}/finish", summary="Report a job's final state", responses=_LEASE_ERRORS)
def finish(worker: Worker, job_id: JobId, body: FinishIn, services: ServicesDep) -> JobOut:
    """Finish the job (repeating the identical call answers the same job)."""
    job = services.store.finish(
        job_id, body.lease_id, JobState(body.state), body.result, body.error
    )
    return job_out(job)


@router.post(
    "/jobs/{job_id}/release", summary="Hand a job back to the queue", responses=_LEASE_ERRORS
)
def release(worker: Worker, job_id: JobId, body: ReleaseIn, services: ServicesDep) -> JobOut:
    """Queue the job again at once (cancelled instead when its cancellation was requested)."""
    return job_out(services.store.release(job_id, body.lease_id))
