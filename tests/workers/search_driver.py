"""Run a search in a separate driver process, as a user's script would, for kill/resume tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strsearch.spec import SearchSpec

DRIVER = """
import json, sys
from strsearch.spec import SearchSpec
from workers import run_search
result = run_search(SearchSpec.model_validate_json(sys.argv[1]), storage_path=sys.argv[2])
print("RESULT " + json.dumps(result.to_dict()))
"""


def driver_args(spec: SearchSpec, storage: Path) -> list[str]:
    """The command line of a driver process searching ``spec`` with storage in ``storage``."""
    return [sys.executable, "-c", DRIVER, spec.model_dump_json(), str(storage)]


def cluster_env(ray_head: dict[str, str]) -> dict[str, str]:
    """Environment for a driver that joins the session's Ray head (the ``ray_head`` fixture)."""
    return {**os.environ, **ray_head, "PYTHONUNBUFFERED": "1"}


def run_driver(spec: SearchSpec, storage: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run a driver to the end and return its ``SearchResult`` as a dict."""
    out = subprocess.run(
        driver_args(spec, storage),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def kill_driver_when(
    spec: SearchSpec,
    storage: Path,
    env: dict[str, str],
    ready: Callable[[], bool],
    timeout: float = 240,
) -> None:
    """Start a driver with ``env``, wait until ``ready()``, then SIGKILL its process group (Ray
    then ends the trials of the driver's job, as it does when a driver's machine is lost)."""
    log = storage / "killed-driver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            driver_args(spec, storage),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the driver never reached the state to kill it in"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
