"""The FastAPI application of the job service (docs/api.md).

``create_app`` wires one application to one database: it upgrades the schema, creates the
bootstrap admin when ``STRSEARCH_BOOTSTRAP_TOKEN`` is set and the agents' worker token when
``STRSEARCH_WORKER_TOKEN`` is, and, while the app runs (its lifespan),
reaps expired leases every third of the lease length so that an agent that vanished gives its
job back even when no other agent claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.body_limit import BodyLimit
from service.context import Services
from service.db import make_engine, upgrade
from service.handlers import install_error_handlers
from service.metrics import HttpMetrics, ServiceMetrics
from service.routers import agent, jobs, ops
from service.settings import Settings
from service.states import Role
from service.store import JobStore
from service.users import BOOTSTRAP_WORKER, Users

log = logging.getLogger(__name__)

DESCRIPTION = """\
The job queue of STR Search. Users submit sparsity-target jobs and follow them; agents claim
them under a lease, run the search on Ray and report back. Every route except `/health`,
`/ready`, `/metrics` and the documentation needs `Authorization: Bearer <token>`.
"""


def _version() -> str:
    try:
        return importlib.metadata.version("strsearch")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


async def reap_forever(services: Services) -> None:
    """Take back expired leases every ``lease_seconds / 3`` until cancelled."""
    interval = services.settings.lease_seconds / 3
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await run_in_threadpool(services.store.reap_expired)
        except Exception:
            log.warning("reaping expired leases failed; trying again later", exc_info=True)
            continue
        if expired:
            log.info("took back %d expired lease(s)", expired)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    reaper = asyncio.create_task(reap_forever(services), name="lease-reaper")
    try:
        yield
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        services.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """An application serving the database of ``settings`` (default: from the environment)."""
    settings = settings if settings is not None else Settings.from_env()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    users = Users(engine)
    if settings.bootstrap_token:
        users.bootstrap(settings.bootstrap_token)
    if settings.worker_token:
        users.bootstrap(settings.worker_token, BOOTSTRAP_WORKER, Role.WORKER)
    metrics = ServiceMetrics()
    store = JobStore(
        engine,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        on_event=metrics.observe,
    )
    metrics.watch_jobs(store.count_by_state)
    services = Services(settings=settings, engine=engine, store=store, users=users, metrics=metrics)

    app = FastAPI(
        title="STR Search service",
        version=_version(),
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.services = services
    app.include_router(jobs.router)
    app.include_router(agent.router)
    app.include_router(ops.router)
    install_error_handlers(app)
    # The last middleware added is the outermost: metrics see every answer, 413s included.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=metrics)
    return app
