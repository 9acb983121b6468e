"""Fixtures shared by the whole suite: one Ray head and one MLflow server for the session.

Tests that run searches share one Ray head started with ``ray start`` (2 CPUs, token
authentication, no dashboard): the pytest process (``local_ray``), the driver processes and the
agents the tests start all join it, instead of starting a Ray of their own for every search. The
head runs without coverage's variables, so Ray's worker processes (the trials) are not traced:
coverage measures the project's code in the pytest process and in the drivers, agents and API
processes the tests start. The MLflow servers run without them too (they run no project code).

Under ``pytest -n N`` (``make test``) every worker process is a session of its own, with its own
Ray head and MLflow server; everything else the tests start is named after a temporary path,
a free port or a random database name, so workers never share state.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The session's Ray head uses token authentication. Ray reads RAY_AUTH_MODE once, when it is
# imported, so this process (which joins the head in ``local_ray``) sets the mode and the token
# before importing it; the processes the tests start inherit both.
RAY_AUTH_TOKEN = secrets.token_hex(32)
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = RAY_AUTH_TOKEN

import ray  # noqa: E402

from strsearch.cli.processes import free_port  # noqa: E402
from strsearch.cli.ray_node import ray_env, start_ray_node  # noqa: E402
from workers.mlflow_server import LocalServer, start_server, stop_server  # noqa: E402


@pytest.fixture(scope="session")
def ray_head(
    mlflow_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The session's Ray head; yields the environment a driver needs to join it
    (``RAY_ADDRESS`` and the auth variables). Its workers inherit the session's MLflow server."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="strs-t-", dir="/tmp"))  # short: socket paths
    log = tmp_path_factory.mktemp("ray") / "head.log"
    head = start_ray_node(
        "Ray head",
        log,
        ray_env(os.environ, RAY_AUTH_TOKEN),
        head_port=port,
        temp_dir=temp_dir,
        cpus=2,
    )
    try:
        yield {
            "RAY_ADDRESS": f"127.0.0.1:{port}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": RAY_AUTH_TOKEN,
        }
    finally:
        head.kill()  # nothing on it to drain or save: the session is over
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def local_ray(ray_head: dict[str, str]) -> Iterator[None]:
    """This process connected to the session's Ray head."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address=ray_head["RAY_ADDRESS"], log_to_driver=False)
    yield
    ray.shutdown()


# --- MLflow: one real tracking server (SQLite + proxied local artifacts) for the session ---


@pytest.fixture(scope="session", autouse=True)
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A real ``mlflow server`` started once per session, stopped at the end.

    It is the session's ``MLFLOW_TRACKING_URI`` (inherited by the Ray workers and the driver
    processes that tests start), so every search a test runs is recorded for real and none
    starts an embedded server in the working directory.
    """
    server = start_server(tmp_path_factory.mktemp("mlflow"))
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")}
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "tests"
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    stop_server(server)


@pytest.fixture
def mlflow_uri(mlflow_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session server's URL, set as ``MLFLOW_TRACKING_URI`` for this test only."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return mlflow_server.url
