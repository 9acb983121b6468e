"""What a tracking benchmark runs against: a real tracking server, and the other benchmarks
running on the machine."""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from workers.mlflow_server import start_server, stop_server


@contextlib.contextmanager
def tracking_server(uri: str | None = None, *, proxy_artifacts: bool = False) -> Iterator[str]:
    """Yield ``uri``, or start a real ``mlflow server`` in a temporary folder (proxying artifacts
    when asked), yield its URL and stop it (and remove the folder) on exit."""
    if uri is not None:
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="tracking-overhead-") as tmp:
        server = start_server(Path(tmp) / "mlflow", proxy_artifacts=proxy_artifacts)
        try:
            yield server.url
        finally:
            stop_server(server)


def machine_state() -> dict[str, Any]:
    """What else ran on the machine: load averages and other ``benchmarks.*`` processes (this
    process and the ones that started it, such as a ``timeout`` wrapper, are not others)."""
    own = _lineage(os.getpid())
    others = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            pid = int(cmdline.parent.name)
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if pid not in own and any(w.startswith("benchmarks.") for w in words):
            others.append(" ".join(w for w in words if w))
    return {"loadavg": os.getloadavg(), "other_benchmarks": sorted(others)}


def _lineage(pid: int) -> set[int]:
    """``pid`` and its ancestors, read from ``/proc/<pid>/stat``."""
    lineage = set()
    while pid > 0 and pid not in lineage:
        lineage.add(pid)
        try:
            pid = int(_stat(pid)[1])
        except OSError:
            break
    return lineage


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command, which is in parentheses and may hold
    spaces: state, parent, process group, … (``proc(5)`` numbers them from 3)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def server_processes(uri: str) -> tuple[int, ...]:
    """The processes of the server listening on ``uri``'s port on this machine: the listener's
    whole process group (``mlflow server`` and its uvicorn worker); empty for a server elsewhere
    or one this user cannot see."""
    port = urllib.parse.urlsplit(uri).port
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()  # local address, remote address, state (0A: listening)
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(f"socket:[{fields[9]}]")
    groups = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                groups.add(os.getpgid(int(fd.parent.parent.name)))
    members = []
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if int(_stat(process.name)[2]) in groups:
                members.append(int(process.name))
    return tuple(sorted(members))


def process_cpu(pids: Sequence[int]) -> float:
    """Seconds of CPU (user and system) that the processes ``pids`` have used so far, at the
    kernel's clock-tick resolution (usually 10 ms); processes that are gone count 0."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat(pid)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
