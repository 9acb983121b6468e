"""The embedded MLflow tracking server: SQLite backend store, local artifact root.

When the user has configured no tracking server (no ``MLFLOW_TRACKING_URI``), searches log to a
real ``mlflow server`` process that this module starts under ``<root>``::

    <root>/mlflow.db      SQLite backend store
    <root>/artifacts/     artifact store: clients on this machine write to it directly, the
                          server reads it for the UI (and proxies it with ``proxy_artifacts``)
    <root>/server.log     the server's stdout and stderr
    <root>/server.json    {"url": ..., "pid": ...} of the running server

The process is detached from the caller (its own session), so a CLI invocation may exit and the
next one reuses the same server through :func:`ensure_server`: repeated searches share one store
and one UI. The module uses only the standard library, so importing it is cheap; process
bookkeeping reads ``/proc`` and locks with ``fcntl``, so it is Linux-only (like the workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from strsearch.child_env import without_coverage
from workers.files import write_atomically

__all__ = [
    "DEFAULT_ROOT",
    "LocalServer",
    "ensure_server",
    "running_server",
    "start_server",
    "stop_server",
    "tracking_uri",
]

DEFAULT_ROOT = Path("runs/mlflow")
"""Where :func:`tracking_uri` keeps the embedded server when no root is given (relative to cwd)."""

_STATE_FILE = "server.json"
_LOG_FILE = "server.log"
_LOCK_FILE = ".server.lock"
_LOG_TAIL_LINES = 40
# No proxy for the loopback health probe, whatever HTTP(S)_PROXY says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Popen handles of servers started by this process: kept so they are reaped on stop and never
# garbage-collected while running (which would emit a ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class LocalServer:
    """A running embedded MLflow server.

    Attributes:
        url: Base URL of the tracking server and UI, e.g. ``http://127.0.0.1:5123``.
        pid: Process id of the ``mlflow server`` process, also its process-group id.
        root: Directory holding the store, the artifacts, the log and ``server.json``.
    """

    url: str
    pid: int
    root: Path


def start_server(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 60.0,
    backend_store_uri: str | None = None,
    proxy_artifacts: bool = False,
) -> LocalServer:
    """Start a new ``mlflow server`` under ``root`` and wait until it is healthy.

    Job execution (the GenAI job runner and its huey consumers) is switched off unless the caller
    set ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``: tracking does not need it and it costs eight
    processes.

    Args:
        root: Directory for the store, the artifacts, ``server.log`` and ``server.json``;
            created if missing.
        host: Interface to bind. MLflow's default host check accepts localhost and private IPs.
        port: Port to listen on; ``None`` picks a free one.
        timeout: Seconds to wait for ``GET /health`` to answer.
        backend_store_uri: Backend store of the runs (e.g. a PostgreSQL URL, as in production);
            default ``sqlite:///<root>/mlflow.db``. Artifacts stay under ``<root>``.
        proxy_artifacts: New experiments store artifacts as ``mlflow-artifacts:`` URIs, so
            clients upload every file through the server, as a shared production server needs.
            By default they get a ``file://`` root under ``<root>/artifacts`` and write to it
            directly: the server only listens on this machine, so its clients run here, and a
            file copy costs far less than an HTTP upload (a trial logs some 50 files). Either
            way the server also proxies ``<root>/artifacts``, so experiments created in the
            other mode keep working.

    Returns:
        The running server, also recorded in ``<root>/server.json``.

    Raises:
        RuntimeError: If the server exits or is not healthy within ``timeout``; the process
            group is killed and the message ends with the tail of ``server.log``.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port if port is not None else _free_port(host)}"
    backend = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
    proc = _spawn(root, url, backend, proxy_artifacts=proxy_artifacts)
    _CHILDREN[proc.pid] = proc
    server = LocalServer(url=url, pid=proc.pid, root=root)
    try:
        _wait_healthy(server, proc, timeout)
    except RuntimeError:
        _terminate_group(server.pid, timeout=5.0)
        raise
    _write_state(server)
    return server


def ensure_server(
    root: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 60.0
) -> LocalServer:
    """Reuse the server recorded in ``<root>/server.json``, or start one.

    The recorded server is reused when its process is alive and ``/health`` answers; otherwise
    a new server is started (on the recorded port when that is free) and the stale file
    replaced. A file lock makes concurrent callers share one server.

    Args:
        root: Directory of the embedded server (see :func:`start_server`).
        host: Interface for a newly started server.
        port: Port for a newly started server; ``None`` picks a free one.
        timeout: Seconds to wait for a newly started server.

    Returns:
        The running server.

    Raises:
        RuntimeError: If a new server had to be started and did not become healthy.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / _LOCK_FILE):
        server = _read_state(root)
        if server is not None and _pid_alive(server.pid) and _healthy(server.url):
            return server
        if port is None and server is not None:
            # Come back on the recorded port when it is free: the URLs that runs and trial
            # configs of unfinished searches hold stay valid across a restart.
            port = _free_recorded_port(server.url, host)
        return start_server(root, host=host, port=port, timeout=timeout)


def _free_recorded_port(url: str, host: str) -> int | None:
    """The port of ``url`` if it can be bound on ``host`` now, else ``None``."""
    port = urllib.parse.urlsplit(url).port
    if port is None:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return None
    return port


def running_server(root: Path) -> LocalServer | None:
    """The server recorded under ``root`` if it is alive and healthy, else ``None``."""
    server = _read_state(root.resolve())
    if server is not None and _pid_alive(server.pid) and _healthy(server.url):
        return server
    return None


def stop_server(server: LocalServer, timeout: float = 10.0) -> None:
    """Stop ``server``: SIGTERM its process group, SIGKILL what is left, remove ``server.json``.

    Args:
        server: The server to stop. Stopping one that is already gone only removes the file.
        timeout: Seconds to wait after SIGTERM before killing.
    """
    _terminate_group(server.pid, timeout=timeout)
    recorded = _read_state(server.root)
    if recorded is None or recorded.pid == server.pid:
        (server.root / _STATE_FILE).unlink(missing_ok=True)


def tracking_uri(root: Path | None = None) -> str:
    """The tracking URI to log to: ``MLFLOW_TRACKING_URI`` if set, else the embedded server's.

    Args:
        root: Directory of the embedded server; defaults to :data:`DEFAULT_ROOT`.

    Returns:
        A tracking URI for :class:`mlflow.MlflowClient` or ``mlflow.set_tracking_uri``.

    Raises:
        RuntimeError: If the embedded server had to be started and did not become healthy.
    """
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return ensure_server(root if root is not None else DEFAULT_ROOT).url


def _spawn(
    root: Path, url: str, backend_store_uri: str, *, proxy_artifacts: bool
) -> subprocess.Popen[bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    artifacts = root / "artifacts"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(artifacts),
        "--serve-artifacts",
        "--host", host,
        "--port", port,
        "--workers", "1",
    ]  # fmt: skip
    if not proxy_artifacts:
        command += ["--default-artifact-root", artifacts.as_uri()]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **without_coverage(os.environ)}
    with (root / _LOG_FILE).open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with _OPENER.open(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(server: LocalServer, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with code {proc.returncode} before answering "
                f"{server.url}/health\n{_log_tail(server.root)}"
            )
        if _healthy(server.url, timeout=1.0):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"mlflow server (pid {server.pid}) did not answer {server.url}/health within "
        f"{timeout:g} s\n{_log_tail(server.root)}"
    )


def _log_tail(root: Path) -> str:
    try:
        lines = (root / _LOG_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return "(no server.log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _terminate_group(pgid: int, timeout: float) -> None:
    """SIGTERM the process group ``pgid``, wait for all of it to exit, SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        if _wait_group_exit(pgid, timeout):
            return


def _wait_group_exit(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    proc = _CHILDREN.get(pgid)
    if proc is not None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        del _CHILDREN[pgid]
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of group ``pgid`` remains, read from ``/proc``."""
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read_state(root: Path) -> LocalServer | None:
    try:
        data = json.loads((root / _STATE_FILE).read_text())
        return LocalServer(url=str(data["url"]), pid=int(data["pid"]), root=root)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(server: LocalServer) -> None:
    state = json.dumps({"url": server.url, "pid": server.pid}) + "\n"
    write_atomically(server.root / _STATE_FILE, state.encode())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
