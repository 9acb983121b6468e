"""Fixtures of the tests that run real agents against a real API process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strsearch.client import Client
from tests.service.live_api import LiveApi, start_api
from tests.workers.agent_processes import AgentProcess, start_agent


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[[float], LiveApi]]:
    """Start a real API on a fresh SQLite database with a lease of the given seconds."""
    started: list[LiveApi] = []

    def make(lease_seconds: float) -> LiveApi:
        api = start_api(
            f"sqlite:///{tmp_path / 'service.db'}",
            tmp_path,
            STRSEARCH_LEASE_SECONDS=str(lease_seconds),
        )
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()


@pytest.fixture
def agents(tmp_path: Path, ray_head: dict[str, str]) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents (``name``, extra CLI args); every one is killed after the test."""
    started: list[AgentProcess] = []

    def start(api: LiveApi, name: str, *args: str) -> AgentProcess:
        process = start_agent(
            api.url,
            api.worker_token,
            tmp_path / "storage",
            name,
            *args,
            log_dir=tmp_path,
            ray_head=ray_head,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def users() -> Iterator[Callable[[LiveApi], Client]]:
    """A user's REST client on an API (closed after the test)."""
    made: list[Client] = []

    def make(api: LiveApi) -> Client:
        made.append(api.api_client(api.token("alice")))
        return made[-1]

    yield make
    for client in made:
        client.close()
