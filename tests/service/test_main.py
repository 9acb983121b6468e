"""``python -m service``: the ready line, clean exits on SIGTERM/SIGINT, bad settings refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.service.live_api import REPO_ROOT, api_env, start_api


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_process_serves_and_exits_cleanly_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    api = start_api(f"sqlite:///{tmp_path / 'service.db'}", tmp_path)
    try:
        assert api.url.startswith("http://127.0.0.1:")
        with api.client() as client:
            assert client.get("/health").json() == {"status": "ok"}
        ready_line = (tmp_path / "api.out").read_text()
        assert ready_line == f"strsearch service listening on {api.url}\n"  # stdout: one line
    finally:
        status = api.stop(sig)
    assert status == 0
    log = api.log_path.read_text()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRSEARCH_LEASE_SECONDS", "soon"),
        ("STRSEARCH_MAX_ATTEMPTS", "0"),
        ("STRSEARCH_MAX_BODY_BYTES", "-5"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = api_env(f"sqlite:///{tmp_path / 'service.db'}", "strs_x", "strs_y", **{variable: value})
    done = subprocess.run(
        [sys.executable, "-m", "service", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert variable in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_help_names_the_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "--help"],
        cwd=REPO_ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "--host" in done.stdout
    assert "--port" in done.stdout


def test_restart_keeps_the_url(tmp_path: Path) -> None:
    api = start_api(f"sqlite:///{tmp_path / 'service.db'}", tmp_path)
    try:
        url = api.url
        api.restart()
        assert api.url == url
        with httpx.Client(base_url=url, trust_env=False) as client:
            assert client.get("/ready").status_code == 200
    finally:
        api.stop()
