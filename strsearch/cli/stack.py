"""The embedded stack of ``strsearch serve`` and ``strsearch demo``: one machine, no containers.

:class:`Stack` starts, under one folder ``<root>``:

- the embedded MLflow server (``workers.mlflow_server``, ``<root>/mlflow``) on the port it had
  last time (``<root>/.mlflow_port``), or ``MLFLOW_TRACKING_URI`` when set;
- the API (``python -m service``) on SQLite ``<root>/service/service.db``; the user/admin token
  is kept in ``<root>/service/token`` (mode 0600) and given to the API as
  ``STRSEARCH_BOOTSTRAP_TOKEN``, so it stays valid across restarts;
- a Ray head (``ray start --head --block``) on free ports, with its own temp dir, token
  authentication and ``--num-cpus``;
- one agent (``strsearch agent``) with a worker token (``<root>/service/agent_token``), joined to
  that head, logging to that MLflow server, its experiments under ``<root>/agent``.

Each child leads a session of its own, so a Ctrl-C in the terminal reaches only this process,
which then stops the children in order: the agent first, with SIGTERM, so it hands its job back
to the queue while the API still answers; then the API; then the Ray head. Stopping a child ends
every process left in its session, and nothing else (never another Ray on the machine).
``<root>/stack.json`` records the children while they run; a lock on ``<root>/.stack.lock`` keeps
a second stack off the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from strsearch.cli.processes import (
    STOP_TIMEOUT_S,
    Child,
    StartError,
    free_port,
    port_free,
    spawn,
    wait_until,
)
from strsearch.cli.ray_node import ray_env, start_ray_node

if TYPE_CHECKING:  # importing workers at run time pulls in Ray and torch: done lazily
    from workers.mlflow_server import LocalServer

API_START_TIMEOUT_S = 90.0
#: the agent gives a running search 60 s to save its state (workers.agent) before killing it
AGENT_STOP_TIMEOUT_S = 90.0


# --- tokens ----------------------------------------------------------------------------------


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` readable by the owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    os.replace(tmp, path)


def read_secret(path: Path) -> str | None:
    """The first line of ``path`` (tightened to 0600), or ``None`` when missing or empty."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not text:
        return None
    path.chmod(0o600)
    return text.splitlines()[0].strip()


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """The API, MLflow, a Ray head and an agent under ``root`` (see the module docstring).

    Args:
        root: folder of everything the stack keeps (``runs`` by default in the CLI).
        host: interface of the API (the other parts listen on 127.0.0.1).
        port: port of the API.
        cpus: CPUs the Ray head offers (``None``: all of the machine's).
        agent: whether to start an agent (off: agents run elsewhere).
        stop_mlflow: whether :meth:`stop` also stops an MLflow server that :meth:`start` started
            (``demo`` keeps it for browsing the result).
    """

    root: Path
    host: str = "127.0.0.1"
    port: int = 8000
    cpus: int | None = None
    agent: bool = True
    stop_mlflow: bool = True
    # what start() found out and started
    children: list[Child] = field(default_factory=list, init=False)
    mlflow_url: str = field(default="", init=False)
    mlflow_configured: bool = field(default=False, init=False)
    ray_address: str = field(default="", init=False)
    _mlflow_started: LocalServer | None = field(default=None, init=False, repr=False)
    _ray_temp: Path | None = field(default=None, init=False, repr=False)
    _lock: IO[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    # paths and addresses
    @property
    def service_dir(self) -> Path:
        """``<root>/service``: the database, the tokens and the API's log."""
        return self.root / "service"

    @property
    def token_path(self) -> Path:
        """The user/admin token (``strsearch submit`` and friends read it)."""
        return self.service_dir / "token"

    @property
    def database_url(self) -> str:
        """SQLite URL of the service's database."""
        return f"sqlite:///{self.service_dir / 'service.db'}"

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def token(self) -> str:
        """The user/admin token (created on first start)."""
        token = read_secret(self.token_path)
        if token is None:
            raise StartError(f"no token in {self.token_path}: the stack is not started")
        return token

    # --- start -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every part, in dependency order; on any failure stop what started and raise."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._start_mlflow()
            self._start_api()
            if self.agent:
                self._start_ray()
                self._start_agent()
            self._write_state()
        except BaseException:
            with shielded():
                self.stop()
            raise

    def _take_lock(self) -> None:
        handle = (self.root / ".stack.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            state = self.root / "stack.json"
            raise StartError(
                f"a stack already runs under {self.root} (see {state}); use it "
                "(`strsearch submit ...`) or stop it first"
            ) from None
        self._lock = handle

    def _start_mlflow(self) -> None:
        """Use ``MLFLOW_TRACKING_URI``, else the embedded server, started on the port it had the
        last time when that is free: runs recorded in job results keep working links."""
        configured = os.environ.get("MLFLOW_TRACKING_URI")
        if configured:
            self.mlflow_url, self.mlflow_configured = configured, True
            return
        from workers.mlflow_server import ensure_server, running_server

        mlflow_root = self.root / "mlflow"
        port_file = self.root / ".mlflow_port"
        already = running_server(mlflow_root)
        port = None
        if already is None:
            with contextlib.suppress(OSError, ValueError):
                port = int(port_file.read_text())
            if port is not None and not port_free("127.0.0.1", port):
                port = None
        server = ensure_server(mlflow_root, port=port)
        self.mlflow_url = server.url
        port_file.write_text(server.url.rsplit(":", 1)[1] + "\n")
        if already is None:
            self._mlflow_started = server

    def _start_api(self) -> None:
        from service.users import new_token

        if not port_free(self.host, self.port):
            raise StartError(f"port {self.port} is in use: give another with --port")
        token = read_secret(self.token_path)
        if token is None:
            token = new_token()
            write_secret(self.token_path, token)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRSEARCH_")}
        env |= {"STRSEARCH_DATABASE_URL": self.database_url, "STRSEARCH_BOOTSTRAP_TOKEN": token}
        command = [sys.executable, "-m", "service", "--host", self.host, "--port", str(self.port)]
        api = spawn("API", command, self.service_dir / "api.log", env)
        self.children.append(api)
        wait_until(api, self._api_ready, API_START_TIMEOUT_S, f"answering {self.api_url}/ready")

    def _api_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.api_url}/ready", timeout=2.0, trust_env=False)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _worker_token(self) -> str:
        """The agent's worker token: the one kept in ``agent_token`` if still valid, else new."""
        from service.db import make_engine
        from service.states import Role
        from service.users import Users

        path = self.service_dir / "agent_token"
        engine = make_engine(self.database_url)
        try:
            users = Users(engine)
            token = read_secret(path)
            if token is not None:
                owner = users.authenticate(token)
                if owner is not None and owner.role is Role.WORKER:
                    return token
            token = users.create_token("agent", Role.WORKER, label="strsearch serve")
        finally:
            engine.dispose()
        write_secret(path, token)
        return token

    def _ray_env(self) -> dict[str, str]:
        return ray_env(os.environ, read_secret(self.root / "ray" / "auth_token") or "")

    def _start_ray(self) -> None:
        ray_dir = self.root / "ray"
        if read_secret(ray_dir / "auth_token") is None:
            write_secret(ray_dir / "auth_token", secrets.token_hex(32))
        # short: Ray's socket paths must fit in 107 bytes
        self._ray_temp = Path(tempfile.mkdtemp(prefix="strs-ray-", dir="/tmp"))
        port = free_port()
        head = start_ray_node(
            "Ray head",
            ray_dir / "ray.log",
            self._ray_env(),
            head_port=port,
            temp_dir=self._ray_temp,
            cpus=self.cpus,
        )
        self.children.append(head)
        self.ray_address = f"127.0.0.1:{port}"

    def _start_agent(self) -> None:
        env = {k: v for k, v in self._ray_env().items() if not k.startswith("STRSEARCH_")}
        env |= {
            "STRSEARCH_SERVER": self.api_url,
            "STRSEARCH_TOKEN": self._worker_token(),
            "RAY_ADDRESS": self.ray_address,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
        }
        storage = self.root / "agent"
        command = [
            sys.executable, "-m", "strsearch.cli", "agent",
            "--server", self.api_url, "--storage", str(storage),
        ]  # fmt: skip
        self.children.append(spawn("agent", command, storage / "agent.log", env))

    def _write_state(self) -> None:
        state = {
            "api": self.api_url,
            "mlflow": self.mlflow_url,
            "ray": self.ray_address or None,
            "ray_temp_dir": str(self._ray_temp) if self._ray_temp else None,
            "pids": {child.name: child.pid for child in self.children},
            "serving_pid": os.getpid(),
        }
        (self.root / "stack.json").write_text(json.dumps(state, indent=2) + "\n")

    # --- run and stop ------------------------------------------------------------------------

    def exited(self) -> list[Child]:
        """Children that exited on their own (the stack is broken when any did)."""
        return [child for child in self.children if not child.running()]

    def stop(self) -> None:
        """Stop the agent (it releases its job), then the API, then the Ray head; and the
        MLflow server when this stack started it and ``stop_mlflow`` is set. Idempotent."""
        by_name = {child.name: child for child in self.children}
        for name, timeout in (
            ("agent", AGENT_STOP_TIMEOUT_S),
            ("API", STOP_TIMEOUT_S),
            ("Ray head", STOP_TIMEOUT_S),
        ):
            child = by_name.get(name)
            if child is not None:
                child.stop(timeout)
        self.children.clear()
        if self._ray_temp is not None:
            shutil.rmtree(self._ray_temp, ignore_errors=True)
            self._ray_temp = None
        if self.stop_mlflow and self._mlflow_started is not None:
            from workers.mlflow_server import stop_server

            stop_server(self._mlflow_started)
            self._mlflow_started = None
        (self.root / "stack.json").unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Inside the block SIGTERM raises ``KeyboardInterrupt``, like Ctrl-C: one way to stop."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (while the stack stops in order)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
