"""The machine state the tracking benchmarks record: other benchmark processes, not their own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks._tracking_env import machine_state

REPO = Path(__file__).resolve().parents[2]


def test_machine_state_lists_other_benchmark_processes() -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "benchmarks.pretend"]
    )
    try:
        # under load the child may not have exec'd yet: wait until its command line shows
        cmdline = Path(f"/proc/{other.pid}/cmdline")
        deadline = time.monotonic() + 20
        while b"benchmarks.pretend" not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        state = machine_state()
    finally:
        other.kill()
        other.wait()
    assert len(state["loadavg"]) == 3
    assert any("benchmarks.pretend" in line for line in state["other_benchmarks"])


def test_machine_state_does_not_count_the_process_that_started_the_benchmark() -> None:
    # a wrapper such as ``timeout 900 python -m benchmarks.…`` is this process's parent
    check = (
        "from benchmarks._tracking_env import machine_state; "
        "print(machine_state()['other_benchmarks'])"
    )
    wrapper = f'{sys.executable} -c "{check}" benchmarks.wrapped; true'
    result = subprocess.run(
        ["bash", "-c", wrapper, "benchmarks.wrapper"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    assert "benchmarks.wrapp" not in result.stdout, result.stdout
