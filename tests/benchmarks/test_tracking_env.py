"""What the tracking benchmarks record of the machine: other benchmark processes (not their own),
the tracking server's processes and their CPU time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._tracking_env import machine_state, process_cpu, server_processes
from workers.mlflow_server import LocalServer

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


def test_server_processes_are_the_listeners_process_group(mlflow_server: LocalServer) -> None:
    pids = server_processes(mlflow_server.url)
    # the server's own process (its group's leader) and the uvicorn worker it starts
    assert mlflow_server.pid in pids and len(pids) >= 2
    assert all(os.getpgid(pid) == mlflow_server.pid for pid in pids)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert server_processes(f"http://127.0.0.1:{port}") == ()  # bound, not listening


def test_process_cpu_counts_what_a_process_spends() -> None:
    spin = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n"
    spinner = subprocess.Popen([sys.executable, "-c", spin + "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 60
        while process_cpu([spinner.pid]) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 0.5 <= process_cpu([spinner.pid]) < 5.0
        assert process_cpu([spinner.pid, 2**22 + 1]) == process_cpu([spinner.pid])  # gone: 0
    finally:
        spinner.kill()
        spinner.wait()
