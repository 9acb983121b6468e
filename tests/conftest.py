"""Fixtures shared by the whole suite: a local Ray (2 CPUs, no dashboard), started once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray

from workers.mlflow_server import LocalServer, start_server, stop_server


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
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
