"""Start the API (``python -m service``) as a child process and wait until it serves.

Used by the tests, the load benchmark and the deployment scripts, which all need the same thing:
a real API process on a given database, and its URL. The process prints one line,
``strsearch service listening on <url>``, once it accepts connections; with ``port=0`` it picks a
free port itself (no race for one), and that line says which.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from service.__main__ import READY_PREFIX

READY = re.compile(re.escape(READY_PREFIX) + r"(http://\S+)")
START_TIMEOUT_S = 90.0


class StartError(RuntimeError):
    """The API exited or did not start listening in time; the message ends with its log."""


def launch(
    env: Mapping[str, str],
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT_S,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the API with environment ``env``; return the process and its URL once it listens.

    Its log (stderr) is appended to ``log_path``; its stdout (the ready line) goes to
    ``log_path`` with the suffix ``.out``.

    Raises:
        StartError: the process exited, or did not listen within ``timeout`` seconds (it is
            killed then).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out_path = log_path.with_suffix(".out")
    with out_path.open("wb") as out, log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", host, "--port", str(port)],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=log,
        )
    deadline = time.monotonic() + timeout
    while not (match := READY.search(out_path.read_text(errors="replace"))):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
            raise StartError(f"the API did not start (exit status {process.returncode}):\n{tail}")
        time.sleep(0.05)
    return process, match.group(1)
