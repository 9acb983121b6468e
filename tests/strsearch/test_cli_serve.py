"""`strsearch serve` as a real process: API, Ray head and agent run a tiny job end to end, and
SIGINT stops every process the stack started (and nothing else).

The stack records its children in ``<root>/stack.json``; each leads a session of its own, so
"gone" means no live process is left in any of those sessions. MLflow is the test session's
server (``MLFLOW_TRACKING_URI``), which the stack uses instead of starting its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strsearch.cli.processes import session_members

START_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def strsearch(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRSEARCH_")}
    return subprocess.run(
        [sys.executable, "-m", "strsearch.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


class Serve:
    """A running ``strsearch serve`` process under ``root``."""

    def __init__(self, root: Path, *args: str, embedded_mlflow: bool = False) -> None:
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = root.parent / f"{root.name}-serve-{self.port}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRSEARCH_")}
        if embedded_mlflow:
            env.pop("MLFLOW_TRACKING_URI", None)
        with self.out.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "strsearch.cli", "serve", "--root", str(root),
                 "--port", str(self.port), *args],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_up(self) -> dict[str, Any]:
        """The stack's ``stack.json`` once it is up and has printed where everything is (the
        ``try: … --watch`` hint is its last line: the places come between, in several writes)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while "--watch" not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.5)
        state: dict[str, Any] = json.loads((self.root / "stack.json").read_text())
        return state

    def interrupt(self) -> int:
        """SIGINT, as Ctrl-C would; the exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=180)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    """Serve processes started by a test, killed at the end if the test left them running."""
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()
        state_file = serve.root / "stack.json"
        if state_file.exists():  # the stack did not stop: end its children's sessions
            for pid in json.loads(state_file.read_text())["pids"].values():
                for member in session_members(pid):
                    os.kill(member, signal.SIGKILL)


@pytest.mark.slow
def test_serve_runs_a_job_and_sigint_stops_every_child(tmp_path: Path, serves: list[Serve]) -> None:
    root = tmp_path / "runs"
    serve = Serve(root, "--cpus", "2")
    serves.append(serve)
    state = serve.wait_up()
    assert set(state["pids"]) == {"API", "Ray head", "agent"}
    assert state["mlflow"] == os.environ["MLFLOW_TRACKING_URI"]
    token_file = root / "service" / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert (root / "service" / "agent_token").stat().st_mode & 0o777 == 0o600
    output = serve.output()
    for place in (serve.url, f"{serve.url}/docs", state["mlflow"], state["ray"], str(token_file)):
        assert place in output, place

    # a second stack on the same folder is refused while this one runs
    second = strsearch("serve", "--root", str(root), "--port", str(free_port()), "--no-agent")
    assert second.returncode == 1
    assert "already runs" in second.stderr

    watched = strsearch(
        "submit", "--model", "digits_cnn", "--dataset", "digits", "--target", "0.8",
        "--tolerance", "0.05", "--epochs", "2", "--max-trials", "2",
        "--lambda-min", "1e-3", "--lambda-max", "5e-2", "--watch", "--json",
        "--server", serve.url, "--token-file", str(token_file),
    )  # fmt: skip
    assert watched.returncode == 0, watched.stdout + watched.stderr + serve.output()
    job = json.loads(watched.stdout)
    assert job["state"] in ("succeeded", "unreached"), job
    assert len(job["result"]["trials"]) == 2
    assert job["result"]["total_epochs"] == 4
    assert job["result"]["mlflow_run_url"].startswith(state["mlflow"])
    assert "trials finished" in watched.stderr  # the live view went to stderr

    assert serve.interrupt() == 0, serve.output()
    assert "stopped" in serve.output()
    for name, pid in state["pids"].items():
        assert session_members(pid) == [], f"{name} left processes behind"
    assert not Path(state["ray_temp_dir"]).exists()
    assert not processes_mentioning(state["ray_temp_dir"])  # no Ray process left its session
    assert not (root / "stack.json").exists()
    agent_log = (root / "agent" / "agent.log").read_text()
    assert "SIGTERM" in agent_log  # stopped with SIGTERM, so it would release a job


def test_serve_without_agent_keeps_its_token_and_urls_across_restarts(
    tmp_path: Path, serves: list[Serve]
) -> None:
    root = tmp_path / "runs"
    token_file = root / "service" / "token"
    first = Serve(root, "--no-agent", embedded_mlflow=True)
    serves.append(first)
    state = first.wait_up()
    assert set(state["pids"]) == {"API"}
    mlflow = json.loads((root / "mlflow" / "server.json").read_text())
    assert state["mlflow"] == mlflow["url"]  # the embedded server, under <root>/mlflow
    token = token_file.read_text()
    submitted = strsearch(
        "submit", "--model", "digits_cnn", "--dataset", "digits", "--target", "0.9",
        "--server", first.url, "--token-file", str(token_file),
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert first.interrupt() == 0, first.output()
    assert session_members(state["pids"]["API"]) == []
    assert session_members(mlflow["pid"]) == []  # serve stops the MLflow server it started

    again = Serve(root, "--no-agent", embedded_mlflow=True)
    serves.append(again)
    restarted = again.wait_up()
    assert token_file.read_text() == token
    assert restarted["mlflow"] == state["mlflow"]  # same port: recorded run links stay valid
    listed = strsearch("jobs", "--json", "--server", again.url, "--token-file", str(token_file))
    assert listed.returncode == 0, listed.stderr
    assert [job["id"] for job in json.loads(listed.stdout)["items"]] == [submitted.stdout.strip()]
    mlflow = json.loads((root / "mlflow" / "server.json").read_text())
    again.process.send_signal(signal.SIGTERM)  # SIGTERM stops it as cleanly as Ctrl-C
    assert again.process.wait(timeout=120) == 0, again.output()
    assert session_members(restarted["pids"]["API"]) == []
    assert session_members(mlflow["pid"]) == []


def test_a_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = strsearch("serve", "--root", str(tmp_path), "--port", str(port), "--no-agent")
    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "stack.json").exists()
