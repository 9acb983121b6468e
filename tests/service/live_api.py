"""Start the real API (``python -m service``) as a subprocess on a given database, for tests.

Reusable by any test or benchmark that needs a running service::

    api = start_api("sqlite:///.../service.db", tmp_path, STRSEARCH_LEASE_SECONDS="2")
    try:
        with api.client(api.token("alice")) as http:
            http.post("/jobs", json={...})
        api.restart()             # same port, same database
    finally:
        api.stop()

The process prints ``strsearch service listening on <url>`` when it accepts connections; the
first start asks for port 0 (no race for a free port) and restarts reuse the port it got, so a
client keeps its URL across restarts. Its output goes to ``<tmp_path>/api.log``.

``admin_token`` is the bootstrap admin's (``STRSEARCH_BOOTSTRAP_TOKEN``), ``worker_token`` the
agents' (``STRSEARCH_WORKER_TOKEN``), both handed to the API the way a deployment does;
:meth:`LiveApi.token` makes more users and tokens with :class:`service.users.Users` on the same
database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.db import make_engine
from service.process import launch
from service.states import Role
from service.users import Users, new_token
from strsearch.client import Client

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 30.0
BACKENDS = ["sqlite", "postgresql"]

#: a complete, valid spec (every other field has a default)
SPEC: dict[str, Any] = {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9}


@dataclass
class LiveApi:
    """A running ``python -m service`` process and what a test needs to talk to it."""

    url: str
    database_url: str
    admin_token: str
    worker_token: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    @property
    def port(self) -> int:
        """The port the API listens on (kept across restarts)."""
        return int(self.url.rsplit(":", 1)[1])

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client on the API (bearer ``token`` when given; close it, or use ``with``)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, trust_env=False)

    def api_client(self, token: str, *, retry_seconds: float = 30.0) -> Client:
        """The project's own REST client (``strsearch.client.Client``) with ``token``."""
        return Client(self.url, token, retry_seconds=retry_seconds)

    def token(self, name: str, role: Role = Role.USER, max_trials: int | None = None) -> str:
        """A new token of user ``name`` (created with ``role`` and quota when missing)."""
        engine = make_engine(self.database_url)
        try:
            users = Users(engine)
            users.ensure_user(name, role, max_trials)
            return users.create_token(name, role, label="tests")
        finally:
            engine.dispose()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's output (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Stop the process with ``sig`` (graceful for SIGTERM/SIGINT); returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def restart(self) -> None:
        """Stop the process and start a new one on the same port and database."""
        self.stop()
        self.process, url = launch(self.env, self.log_path, port=self.port, cwd=REPO_ROOT)
        if url != self.url:
            raise RuntimeError(f"the restarted API listens on {url}, not {self.url}")


def api_env(
    database_url: str, admin_token: str, worker_token: str, **env: object
) -> dict[str, str]:
    """The environment of an API process: this one without ``STRSEARCH_*``, plus the settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("STRSEARCH_")}
    base["STRSEARCH_DATABASE_URL"] = database_url
    base["STRSEARCH_BOOTSTRAP_TOKEN"] = admin_token
    base["STRSEARCH_WORKER_TOKEN"] = worker_token
    base.update({key: str(value) for key, value in env.items()})
    return base


def start_api(database_url: str, tmp_path: Path, port: int = 0, **env: object) -> LiveApi:
    """Start the API on ``database_url`` (migrated by the API itself) and wait until it serves.

    ``env`` adds environment variables, e.g. ``STRSEARCH_LEASE_SECONDS="2"``. The caller must
    :meth:`LiveApi.stop` it.
    """
    admin_token, worker_token = new_token(), new_token()
    environment = api_env(database_url, admin_token, worker_token, **env)
    log_path = tmp_path / "api.log"
    process, url = launch(environment, log_path, port=port, cwd=REPO_ROOT)
    return LiveApi(
        url=url,
        database_url=database_url,
        admin_token=admin_token,
        worker_token=worker_token,
        process=process,
        env=environment,
        log_path=log_path,
    )


def database_for(backend: str, tmp_path: Path, postgres_url_factory: Callable[[], str]) -> str:
    """A fresh, empty database URL on ``backend`` (the API migrates it when it starts).

    ``postgres_url_factory`` is the session fixture of tests/service/conftest.py.
    """
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return postgres_url_factory()


def new_user(api: LiveApi, role: Role = Role.USER, max_trials: int | None = None) -> str:
    """A token of a new user with a unique name (tests sharing one API stay apart this way)."""
    return api.token(f"{role.value}-{uuid.uuid4().hex[:10]}", role, max_trials)
