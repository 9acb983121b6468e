"""Operations routes without authentication: `/health`, `/ready` and `/metrics`."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.context import ServicesDep
from service.db import schema_at_head
from service.schemas import Status

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


def readiness_problem(engine: Engine) -> str | None:
    """Why the service cannot serve jobs now (`None` when the database is up and current)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if not schema_at_head(engine):
            return "the database schema is not at the latest migration"
    except SQLAlchemyError as exc:
        log.warning("readiness check: database unavailable", exc_info=True)
        return f"the database does not answer ({type(exc).__name__})"
    return None


@router.get("/health", summary="Whether the process serves")
def health() -> Status:
    """`200 {"status": "ok"}` while the process serves requests."""
    return Status(status="ok")


@router.get(
    "/ready",
    summary="Whether the service can serve jobs",
    responses={503: {"description": "The database is down or its schema is not current."}},
)
def ready(services: ServicesDep) -> Response:
    """`200` when the database answers and its schema is at the latest migration, else `503`."""
    problem = readiness_problem(services.engine)
    if problem is not None:
        return JSONResponse({"status": "unavailable", "detail": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def metrics(services: ServicesDep) -> Response:
    """The application's metrics in the Prometheus text format."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
