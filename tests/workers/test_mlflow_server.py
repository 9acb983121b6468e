"""The embedded MLflow server: start, reuse, stale state, stop, and a real logging round trip."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest

from workers.mlflow_server import (
    LocalServer,
    ensure_server,
    start_server,
    stop_server,
    tracking_uri,
)


def _health(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/health", timeout=5) as response:
        return str(response.read().decode())


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def _processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_started_server_is_healthy_and_recorded(mlflow_server: LocalServer) -> None:
    assert _health(mlflow_server.url) == "OK"
    state = json.loads((mlflow_server.root / "server.json").read_text())
    assert state == {"url": mlflow_server.url, "pid": mlflow_server.pid}
    assert (mlflow_server.root / "mlflow.db").is_file()


def test_ensure_server_reuses_the_recorded_server(mlflow_server: LocalServer) -> None:
    first = ensure_server(mlflow_server.root)
    second = ensure_server(mlflow_server.root)
    assert first == second == mlflow_server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_stale_state_is_replaced_and_stop_kills_the_group(tmp_path: Path) -> None:
    dead, port = _dead_pid(), _free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "server.json").write_text(json.dumps({"url": url, "pid": dead}))
    server = ensure_server(tmp_path)
    try:
        assert server.pid != dead
        assert server.url == url, "a restarted server comes back on the recorded port"
        assert _health(server.url) == "OK"
        assert json.loads((tmp_path / "server.json").read_text())["pid"] == server.pid
        assert _processes_mentioning(str(tmp_path))  # the mlflow CLI and its uvicorn child
    finally:
        stop_server(server)
    assert not (tmp_path / "server.json").exists()
    assert _processes_mentioning(str(tmp_path)) == []
    stop_server(server)  # stopping twice is harmless


def test_start_timeout_kills_the_server_and_shows_the_log(tmp_path: Path) -> None:
    (tmp_path / "server.log").write_text("marker from an earlier run\n")  # the log is appended
    with pytest.raises(RuntimeError, match=r"did not answer .*/health within") as info:
        start_server(tmp_path, timeout=0.2)
    assert "marker from an earlier run" in str(info.value)
    assert _processes_mentioning(str(tmp_path)) == []
    assert not (tmp_path / "server.json").exists()


def _round_trip(server: LocalServer, tmp_path: Path) -> str:
    """Log a metric and an artifact to a new run of ``server``, read them back, and check the
    file landed under the server's ``artifacts`` folder; returns the run's artifact URI."""
    client = mlflow.MlflowClient(server.url)
    experiment_id = client.create_experiment(f"round-trip-{tmp_path.name}")
    run = client.create_run(experiment_id, run_name="trial")
    client.log_metric(run.info.run_id, "sparsity", 0.9, step=3)
    upload = tmp_path / "up" / "budget.csv"
    upload.parent.mkdir()
    upload.write_text("layer,sparsity\nconv1,0.5\n")
    client.log_artifact(run.info.run_id, str(upload), artifact_path="budgets")
    client.set_terminated(run.info.run_id)

    fetched = client.get_run(run.info.run_id)
    assert fetched.data.metrics == {"sparsity": 0.9}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "budgets")] == [
        "budgets/budget.csv"
    ]
    down = client.download_artifacts(run.info.run_id, "budgets/budget.csv", str(tmp_path))
    assert Path(down).read_text() == upload.read_text()
    stored = list((server.root / "artifacts").rglob("budgets/budget.csv"))
    mine = [p for p in stored if run.info.run_id in p.parts]
    assert len(mine) == 1
    # the UI reads artifacts through the server in both modes
    query = urllib.parse.urlencode({"path": "budgets/budget.csv", "run_uuid": run.info.run_id})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{server.url}/get-artifact?{query}", timeout=10) as response:
        assert response.read().decode() == upload.read_text()
    return str(fetched.info.artifact_uri)


def test_clients_write_artifacts_to_the_local_root_directly(
    mlflow_server: LocalServer, tmp_path: Path
) -> None:
    uri = _round_trip(mlflow_server, tmp_path)
    assert uri.startswith((mlflow_server.root / "artifacts").as_uri() + "/")


def _environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(e.split("=", 1) for e in entries if "=" in e)


def test_a_proxying_server_takes_artifacts_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server inherits this environment but for coverage's variables: it runs none of the
    # project's code, and measuring it would only slow every test's tracking down
    monkeypatch.setenv("COVERAGE_PROCESS_START", str(tmp_path / "no-such-config"))
    monkeypatch.setenv("STRSEARCH_TEST_MARK", "inherited")
    server = start_server(tmp_path / "server", proxy_artifacts=True)
    try:
        environ = _environ(server.pid)
        uri = _round_trip(server, tmp_path)
    finally:
        stop_server(server)
    assert uri.startswith("mlflow-artifacts:")
    assert environ["STRSEARCH_TEST_MARK"] == "inherited"
    assert not {"COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"} & set(environ)


def test_tracking_uri_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri(tmp_path / "unused") == "http://tracking.example:5000"
    assert not (tmp_path / "unused").exists()  # no server was started


def test_tracking_uri_falls_back_to_the_embedded_server(
    mlflow_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(mlflow_server.root) == mlflow_server.url


def test_mlflow_uri_fixture_sets_the_environment(mlflow_uri: str) -> None:
    assert tracking_uri() == mlflow_uri
