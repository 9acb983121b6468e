"""Start a Ray node (a head, or a worker joining one) as a child process of its own session.

``ray start --block`` stays in the foreground while the node runs, so the node is one
:class:`~strsearch.cli.processes.Child`: stopping it stops the node, and killing its session
takes the node down at once with every worker process on it, as a lost machine would.

Nodes use token authentication (Ray 2.60's default): every node and driver of a cluster needs the
same ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (:func:`ray_env`). Several nodes may run on
one machine: every port a node opens is picked free, never Ray's fixed defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from strsearch.child_env import without_coverage
from strsearch.cli.processes import (
    Child,
    free_port,
    log_contains,
    log_size,
    spawn,
    wait_until,
)

RAY_START_TIMEOUT_S = 180.0
RAY_READY_LINE = "Ray runtime started"
RAY = str(Path(sys.executable).with_name("ray"))


def ray_env(base: Mapping[str, str], token: str) -> dict[str, str]:
    """The environment of a node or driver of the cluster whose auth token is ``token``.

    Coverage's variables are dropped: Ray's worker processes inherit their node's environment.
    """
    return without_coverage(base) | {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }


def start_ray_node(
    name: str,
    log: Path,
    env: Mapping[str, str],
    *,
    head_port: int | None = None,
    address: str | None = None,
    temp_dir: Path | None = None,
    cpus: int | None = None,
) -> Child:
    """Start a head (``head_port`` given) or a worker node joining ``address``; wait until up.

    Args:
        name: what messages call the node.
        log: file that receives the node's output (appended).
        env: its environment (see :func:`ray_env`).
        head_port: the head's GCS port; ``None`` for a worker node.
        address: ``host:port`` of the head a worker node joins.
        temp_dir: the head's temp dir (a short path: Ray's socket paths must fit 107 bytes).
        cpus: CPUs the node offers (``None``: all of the machine's).

    Raises:
        StartError: the node exited or did not start within :data:`RAY_START_TIMEOUT_S`.
    """
    if (head_port is None) == (address is None):
        raise ValueError("give head_port (a head) or address (a worker node), not both")
    command = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    if head_port is not None:
        command += [
            "--head", f"--port={head_port}", "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
        ]  # fmt: skip
        if temp_dir is not None:
            command.append(f"--temp-dir={temp_dir}")
    else:
        command.append(f"--address={address}")
    command += [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
    if cpus is not None:
        command.append(f"--num-cpus={cpus}")
    start = log_size(log)
    node = spawn(name, command, log, env)
    try:
        wait_until(
            node, lambda: log_contains(log, RAY_READY_LINE, start), RAY_START_TIMEOUT_S, "starting"
        )
    except BaseException:
        node.kill()
        raise
    return node
