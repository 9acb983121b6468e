"""Prometheus metrics of one application, on its own registry (never the global default one).

- ``strsearch_jobs{state}``: jobs per state, counted in the database on every scrape (so every
  replica reports the same numbers and nothing is lost when a process restarts);
- ``strsearch_http_requests_total{method,route,status}`` and the
  ``strsearch_http_request_seconds{method,route}`` histogram, recorded by :class:`HttpMetrics`
  around every request (``route`` is the route's path template, so ids do not explode labels);
- ``strsearch_job_transitions_total{to}``: state changes this process made (the store reports
  each committed change to :meth:`ServiceMetrics.observe`);
- ``strsearch_leases_expired_total``: leases this process found expired and took back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.records import EventRecord
from service.states import JobState
from service.store import is_lease_expiry

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"
#: methods reported by name; any other is ``other`` (labels must stay a small, fixed set)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class JobStateCollector(Collector):
    """``strsearch_jobs{state}`` computed on scrape from ``count_by_state``."""

    def __init__(self, count_by_state: Callable[[], dict[JobState, int]]) -> None:
        self._count_by_state = count_by_state

    def collect(self) -> Iterable[Metric]:
        """One gauge sample per state (0 for states without jobs); none if the database fails."""
        try:
            counts = self._count_by_state()
        except Exception:
            log.warning("could not count jobs for /metrics", exc_info=True)
            return []
        family = GaugeMetricFamily("strsearch_jobs", "Jobs per state.", labels=["state"])
        for state in JobState:
            family.add_metric([state.value], counts.get(state, 0))
        return [family]

    def describe(self) -> Iterable[Metric]:
        """Describe without touching the database (registration must not query it)."""
        return [GaugeMetricFamily("strsearch_jobs", "Jobs per state.", labels=["state"])]


class ServiceMetrics:
    """The registry of one application and the metrics the routes update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "strsearch_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "strsearch_http_request_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "strsearch_job_transitions",
            "Job state changes made by this process, by the state entered.",
            ["to"],
            registry=self.registry,
        )
        self.leases_expired = Counter(
            "strsearch_leases_expired",
            "Expired leases this process took back (job requeued, failed or cancelled).",
            registry=self.registry,
        )
        for state in JobState:
            self.transitions.labels(to=state.value)

    def watch_jobs(self, count_by_state: Callable[[], dict[JobState, int]]) -> None:
        """Report ``strsearch_jobs{state}`` from ``count_by_state`` on every scrape."""
        self.registry.register(JobStateCollector(count_by_state))

    def observe(self, event: EventRecord) -> None:
        """Count one committed change of a job's state (the store's ``on_event`` listener)."""
        self.transitions.labels(to=event.to_state.value).inc()
        if is_lease_expiry(event):
            self.leases_expired.inc()


def route_template(scope: Scope) -> str:
    """The path template of the route that served ``scope`` (``/jobs/{job_id}``).

    Read after the request: FastAPI leaves its route in ``scope["route"]``; a plain Starlette
    route (the documentation pages) has a fixed path and leaves its ``endpoint``. Requests that
    matched no route (404s, bodies refused before routing) are ``unmatched``.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("endpoint") is not None:
        return str(scope["path"])
    return UNMATCHED_ROUTE


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP request into a :class:`ServiceMetrics`.

    A request whose handler raises is counted with status 500 (the error handler outside this
    middleware answers it).
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, recording its route, status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = route_template(scope)
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_seconds.labels(method, route).observe(time.perf_counter() - started)
