"""A small HTTP client of the service's REST API (docs/api.md), shared by the CLI and the agent.

It imports httpx only (no torch, no Ray), so ``strsearch submit`` and friends start fast. Calls
that are safe to repeat are retried while the server cannot be reached (a restarting API); a
submission is made safe to repeat with an ``Idempotency-Key`` generated once per call.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
RETRY_SECONDS = 30.0


class ApiError(Exception):
    """The server answered with an error status; ``detail`` is its message (or error list)."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {format_detail(detail)}")


def format_detail(detail: Any) -> str:
    """One line per error of a FastAPI-style ``detail`` (a string, or a list of ``loc``/``msg``)."""
    if isinstance(detail, list):
        lines = []
        for error in detail:
            if isinstance(error, Mapping):
                loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
                lines.append(f"{loc or 'body'}: {error.get('msg', error)}")
            else:
                lines.append(str(error))
        return "; ".join(lines)
    return str(detail)


@dataclass(frozen=True)
class Claim:
    """A job leased to an agent."""

    job: dict[str, Any]
    lease_id: str
    lease_seconds: float
    attempt: int


class Client:
    """The REST API at ``server`` with a bearer ``token``.

    Args:
        server: base URL; default ``STRSEARCH_SERVER`` or http://127.0.0.1:8000.
        token: bearer token; default ``STRSEARCH_TOKEN``.
        retry_seconds: how long repeatable calls keep retrying while the server is unreachable.
    """

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        retry_seconds: float = RETRY_SECONDS,
        timeout: float = 30.0,
    ) -> None:
        self.server = (server or os.environ.get("STRSEARCH_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token or os.environ.get("STRSEARCH_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retry_seconds = retry_seconds
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ---

    def _request(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        deadline = time.monotonic() + (self.retry_seconds if retry else 0.0)
        delay = 0.2
        while True:
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if response.status_code == 503 and time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if response.status_code >= 400:
                try:
                    detail = response.json().get("detail", response.text)
                except ValueError:
                    detail = response.text
                raise ApiError(response.status_code, detail)
            return response

    # --- user routes ---

    def submit(self, spec: Mapping[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job; retries reuse one ``Idempotency-Key`` so at most one job is created."""
        key = idempotency_key or uuid.uuid4().hex
        response = self._request("POST", "/jobs", json=dict(spec), headers={"Idempotency-Key": key})
        job: dict[str, Any] = response.json()
        return job

    def jobs(
        self, states: list[str] | None = None, *, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        """A page of jobs, newest first: ``{"items", "total", "limit", "offset"}``."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if states:
            params["state"] = states
        page: dict[str, Any] = self._request("GET", "/jobs", params=params).json()
        return page

    def job(self, job_id: str) -> dict[str, Any]:
        """One job with its progress and result."""
        job: dict[str, Any] = self._request("GET", f"/jobs/{job_id}").json()
        return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job (queued: at once; running: its agent stops it)."""
        job: dict[str, Any] = self._request("POST", f"/jobs/{job_id}/cancel").json()
        return job

    # --- agent routes ---

    def claim(self, agent: str) -> Claim | None:
        """Lease the oldest queued job, or ``None`` when the queue is empty.

        Not retried: a claim whose answer was lost leaves a lease nobody extends, which expires
        and returns the job to the queue.
        """
        response = self._request("POST", "/agent/claim", json={"agent": agent}, retry=False)
        if response.status_code == 204:
            return None
        body = response.json()
        return Claim(body["job"], body["lease_id"], float(body["lease_seconds"]), body["attempt"])

    def heartbeat(
        self, job_id: str, lease_id: str, progress: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Extend the lease and report progress; the answer says whether to cancel."""
        body = {"lease_id": lease_id, "progress": dict(progress) if progress else None}
        answer: dict[str, Any] = self._request(
            "POST", f"/agent/jobs/{job_id}/heartbeat", json=body
        ).json()
        return answer

    def finish(
        self,
        job_id: str,
        lease_id: str,
        state: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Report the job's final state (repeating the same call is safe)."""
        body = {
            "lease_id": lease_id,
            "state": state,
            "result": dict(result) if result is not None else None,
            "error": error,
        }
        job: dict[str, Any] = self._request(
            "POST", f"/agent/jobs/{job_id}/finish", json=body
        ).json()
        return job

    def release(self, job_id: str, lease_id: str) -> dict[str, Any]:
        """Hand a leased job back to the queue (graceful agent shutdown)."""
        job: dict[str, Any] = self._request(
            "POST", f"/agent/jobs/{job_id}/release", json={"lease_id": lease_id}
        ).json()
        return job

    # --- operations ---

    def health(self) -> bool:
        """Whether the API answers ``/health`` (no retry)."""
        try:
            return self._request("GET", "/health", retry=False).status_code == 200
        except (httpx.HTTPError, ApiError):
            return False
