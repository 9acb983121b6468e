"""What a tracking benchmark runs against: a real tracking server, and the other benchmarks
running on the machine."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
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
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        # the parent is the second field after the command, which is in parentheses
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return lineage
