"""A search on a real two-node Ray cluster: a head and a worker node started with `ray start`.

Both nodes run on this machine (each with 1 CPU), with token authentication as Ray 2.60 enables it
by default. The search's driver is a separate process that joins through ``RAY_ADDRESS``; with two
trials at a time and one CPU per trial, the trials must spread over both nodes. The experiment
storage is a local folder, which both nodes share because they are on one machine (on a real
multi-node cluster it must be a shared filesystem or an object-store URI).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from strsearch.spec import SearchSpec
from tests.workers.search_driver import run_driver
from workers import experiment_name

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[dict[str, str]]:
    """Start a head and a worker node; yield the environment a driver needs to join them."""
    temp_dir = tempfile.mkdtemp(prefix="rayc", dir="/tmp")  # short: Ray's socket paths have a limit
    port = _free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
             "--include-dashboard=false", *common],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        subprocess.run(
            [RAY, "start", f"--address=127.0.0.1:{port}", *common],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        # stop only this cluster's processes (their command lines name its temp dir), never the
        # local Ray other tests use
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_search_runs_trials_on_both_nodes(two_node_cluster: dict[str, str], tmp_path: Path) -> None:
    spec = SearchSpec.parse(
        {
            "model": "digits_cnn",
            "dataset": "digits",
            "target_sparsity": 0.8,
            "tolerance": 0.02,
            "training": {"epochs": 3},
            "search": {"max_trials": 4, "parallel_trials": 2, "lambda_min": 1e-3,
                       "lambda_max": 5e-2},
        }
    )  # fmt: skip
    result = run_driver(spec, tmp_path, two_node_cluster)
    assert len(result["trials"]) >= 2
    assert all(t["status"] != "failed" for t in result["trials"]), result["trials"]

    nodes_per_trial = {}
    for result_file in (tmp_path / experiment_name(spec)).glob("*/result.json"):
        reports = [json.loads(line) for line in result_file.read_text().splitlines() if line]
        nodes_per_trial[result_file.parent.name] = {r["node_id"] for r in reports}
    assert all(len(nodes) == 1 for nodes in nodes_per_trial.values())  # a trial stays on a node
    used = set().union(*nodes_per_trial.values())
    assert len(used) == 2, nodes_per_trial


@pytest.mark.slow
def test_a_data_parallel_trial_spans_both_nodes(
    two_node_cluster: dict[str, str], tmp_path: Path
) -> None:
    """Two Ray Train workers of one CPU each on a cluster of two one-CPU nodes: the only
    placement is one worker per node, so the trial trains data-parallel (gloo) across nodes."""
    spec = SearchSpec.parse(
        {
            "model": "digits_cnn",
            "dataset": "digits",
            "target_sparsity": 0.8,
            "tolerance": 0.05,
            "training": {"epochs": 2},
            "search": {"max_trials": 1, "parallel_trials": 1, "lambda_min": 1e-3,
                       "lambda_max": 5e-2},
            "resources": {"cpus_per_trial": 1, "workers_per_trial": 2},
        }
    )  # fmt: skip
    result = run_driver(spec, tmp_path, two_node_cluster)
    (trial,) = result["trials"]
    assert trial["status"] != "failed", trial
    assert trial["epochs"] == 2
    reports = [
        json.loads(line)
        for result_file in (tmp_path / experiment_name(spec)).glob("*/result.json")
        for line in result_file.read_text().splitlines()
        if line
    ]
    assert [r["epoch"] for r in reports] == [1, 2]
    assert all(r["world_size"] == 2 for r in reports), reports
