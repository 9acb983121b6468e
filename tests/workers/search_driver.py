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


def local_env(**extra: str) -> dict[str, str]:
    """Environment for a driver that starts its own local Ray."""
    return {**os.environ, "RAY_ADDRESS": "", "PYTHONUNBUFFERED": "1", **extra}


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
    spec: SearchSpec, storage: Path, ready: Callable[[], bool], timeout: float = 240
) -> None:
    """Start a driver, wait until ``ready()``, then SIGKILL its whole process group (the driver,
    its local Ray and every trial) at once."""
    log = storage / "killed-driver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            driver_args(spec, storage),
            env=local_env(),
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
