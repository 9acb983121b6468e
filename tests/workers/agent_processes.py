"""Run ``strsearch agent`` as real processes against a live API, for the agent tests.

An agent is started through its Typer command (the same function ``strsearch agent`` runs) in a
fresh interpreter, its searches joining the session's Ray head (tests/conftest.py); its output
(and its search processes') goes to a log file, which failure messages quote.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import select

from service.db import make_engine
from service.models import JobEvent

T = TypeVar("T")

AGENT_MAIN = (
    "import typer\n"
    "from strsearch.cli.agent import agent\n"
    "app = typer.Typer(add_completion=False)\n"
    "app.command()(agent)\n"
    "app()\n"
)
SEARCH_PID = re.compile(r"job (\S+): search process (\d+)")


@dataclass
class AgentProcess:
    """A running agent."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    def log(self, lines: int = 60) -> str:
        """The end of the agent's output."""
        text = self.log_path.read_text(errors="replace")
        return f"--- agent {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def search_pids(self) -> dict[str, int]:
        """Job id → pid of the search process the agent started for it (from its log)."""
        text = self.log_path.read_text(errors="replace")
        return {job: int(pid) for job, pid in SEARCH_PID.findall(text)}

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the agent process only (not to its search process)."""
        self.process.send_signal(sig)

    def wait(self, timeout: float = 120) -> int:
        """Wait for the agent to exit; its exit status."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the agent did not exit\n{self.log()}") from None

    def stop(self) -> None:
        """Make sure the agent is gone (SIGKILL if needed) and close its log."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


def start_agent(
    server: str,
    token: str,
    storage: Path,
    name: str,
    *args: str,
    log_dir: Path,
    ray_head: dict[str, str],
) -> AgentProcess:
    """Start an agent named ``name`` on ``server`` with experiment storage ``storage``, its
    searches joining the Ray head of ``ray_head`` (``RAY_ADDRESS`` and the auth variables)."""
    log_path = log_dir / f"agent-{name}.log"
    log = log_path.open("ab")
    env = {
        **os.environ,
        "STRSEARCH_TOKEN": token,
        **ray_head,
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-c", AGENT_MAIN, "--server", server, "--storage", str(storage)]
    command += ["--name", name, "--poll", "0.3", *args]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return AgentProcess(name, process, log_path, log)


def wait_for(
    check: Callable[[], T | None],
    what: str | Callable[[], str],
    *,
    timeout: float = 240,
    agents: tuple[AgentProcess, ...] = (),
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (or what it
    returns, when it is a callable) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(agent.log() for agent in agents)
            what = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.3)


def _live_processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process that is not a zombie (from /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (command) "
        if fields[0] not in ("Z", "X"):
            out[int(stat.parent.name)] = (int(fields[1]), command.strip()[:120])
    return out


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants now (a search process: its Ray and its trial workers,
    which Ray puts in process groups of their own)."""
    processes = _live_processes()
    tree = {pid}
    grew = True
    while grew:
        found = {p for p, (parent, _) in processes.items() if parent in tree}
        grew = not found <= tree
        tree |= found
    return tree


def survivors(pids: set[int], *, ignore: tuple[str, ...] = ()) -> list[str]:
    """The processes of ``pids`` still alive (zombies count as ended), but those whose command
    line starts with one of ``ignore``."""
    processes = _live_processes()
    return [
        f"{pid} {processes[pid][1]}"
        for pid in sorted(pids)
        if pid in processes and not processes[pid][1].startswith(ignore)
    ]


def job_events(database_url: str, job_id: str) -> list[dict[str, Any]]:
    """The job's changes of state from the service's database, oldest first."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(JobEvent.from_state, JobEvent.to_state, JobEvent.reason, JobEvent.agent)
                .where(JobEvent.job_id == job_id)
                .order_by(JobEvent.id)
            ).all()
    finally:
        engine.dispose()
    return [dict(row._mapping) for row in rows]
