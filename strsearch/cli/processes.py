"""Child processes that each lead a session of their own: start, wait for, stop, kill.

The parts of a stack (``strsearch serve``, the local topology of ``deploy/topology.py``) run as
separate processes. Each one is started in a new session, so a Ctrl-C in the terminal reaches
only the parent, and stopping a part ends every process it started that stayed in its session
(a Ray node's raylet and workers, a search's driver) and nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 30.0
_LOG_TAIL_LINES = 30


class StartError(RuntimeError):
    """A part did not start (the message ends with its log's tail)."""


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``, read from ``/proc``."""
    members = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat_path.parent.name))
    return members


def kill_session(sid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process left in session ``sid`` until none is."""
    deadline = time.monotonic() + timeout
    while (members := session_members(sid)) and time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the file at ``path`` (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """A child process (normally leading its own session: :func:`spawn`), output in ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Its process id, also the id of its session."""
        return self.process.pid

    def running(self) -> bool:
        """Whether the process has not exited."""
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the process, wait up to ``timeout``, then SIGKILL what is left of its
        session (the process and anything it started that did not leave the session)."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the process and everything left in its session at once (a crash)."""
        if self.running():
            self.process.kill()
        kill_session(self.pid)
        self.process.wait()


def spawn(name: str, command: list[str], log: Path, env: Mapping[str, str]) -> Child:
    """Start ``command`` in a new session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, process, log)


def wait_until(child: Child, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``ready`` until true; a child that exits or a timeout is a :class:`StartError`."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not child.running():
            raise StartError(
                f"{child.name} exited with status {child.process.returncode} before {what}; "
                f"end of {child.log}:\n{tail(child.log)}"
            )
        if time.monotonic() > deadline:
            raise StartError(
                f"{child.name} did not {what} within {timeout:g} s; end of {child.log}:\n"
                f"{tail(child.log)}"
            )
        time.sleep(0.2)


def log_contains(log: Path, text: str, start: int = 0) -> bool:
    """Whether ``text`` occurs in ``log`` after byte ``start`` (what a process printed since)."""
    try:
        with log.open("rb") as handle:
            handle.seek(start)
            return text.encode() in handle.read()
    except FileNotFoundError:
        return False


def log_size(log: Path) -> int:
    """The size of ``log`` now (0 when missing): where the next start's output begins."""
    return log.stat().st_size if log.exists() else 0
