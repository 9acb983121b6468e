"""`/jobs`: submit, list, read and cancel jobs (users see their own; admins see all)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.exceptions import RequestValidationError

from service.auth import JobUser
from service.context import ServicesDep
from service.schemas import JobOut, JobPage, job_out
from service.states import JobState
from service.validation import JobId, submission_errors
from strsearch.spec import SearchSpec

router = APIRouter(prefix="/jobs", tags=["jobs"])

REPLAYED_HEADER = "Idempotency-Replayed"

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown token."},
    403: {"description": "A worker token."},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a job",
    responses={
        **_ERRORS,
        200: {"description": "A replay of an Idempotency-Key: the job created the first time."},
        409: {"description": "The Idempotency-Key was used with a different body."},
        413: {"description": "The body is over the size limit."},
    },
)
def submit(
    spec: SearchSpec,
    user: JobUser,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Makes a retry safe: the same key and body answer the same job.",
        ),
    ] = None,
) -> JobOut:
    """Queue a search job; `201` with the job (`200` when it replays an Idempotency-Key)."""
    quota = user.max_trials if user.max_trials is not None else services.settings.max_trials
    errors = submission_errors(spec, quota)
    if errors:
        raise RequestValidationError(errors)
    job, created = services.store.create_job(
        user, spec.model_dump(mode="json"), idempotency_key=idempotency_key
    )
    if not created:
        response.status_code = status.HTTP_200_OK
        response.headers[REPLAYED_HEADER] = "true"
    return job_out(job)


@router.get("", summary="List jobs", responses=_ERRORS)
def list_jobs(
    user: JobUser,
    services: ServicesDep,
    state: Annotated[
        list[JobState] | None, Query(description="Only jobs in these states (repeatable).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobPage:
    """The caller's jobs (an admin's: everyone's), newest first, without per-trial lists."""
    jobs, total = services.store.list_jobs(user, states=state or None, limit=limit, offset=offset)
    return JobPage(
        items=[job_out(job, summary=True) for job in jobs], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{job_id}",
    summary="Read a job",
    responses={**_ERRORS, 404: {"description": "No such job (or another user's)."}},
)
def get_job(user: JobUser, job_id: JobId, services: ServicesDep) -> JobOut:
    """One job with its progress and result."""
    return job_out(services.store.get_job(job_id, user))


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job",
    responses={
        **_ERRORS,
        404: {"description": "No such job (or another user's)."},
        409: {"description": "The job is already finished."},
    },
)
def cancel_job(user: JobUser, job_id: JobId, services: ServicesDep) -> JobOut:
    """Cancel at once when queued; ask the agent to stop when running."""
    return job_out(services.store.cancel(job_id, user))
