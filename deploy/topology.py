"""The production topology on one machine, every part its own process on loopback.

The same shape as ``docker-compose.yml`` and ``deploy/k8s``, without containers::

    PostgreSQL (running)  ◀── API  (python -m service; STRSEARCH_DATABASE_URL = a new database)
                          ◀── MLflow tracking server (backend store = a second new database)
    Ray head  (ray start --head)          ◀── agents (strsearch agent): Ray drivers on the head's
    Ray worker node(s) (ray start --address)   machine, RAY_ADDRESS = the head, a worker token

The script submits a batch of jobs concurrently through the REST API, follows them to the end
and can inject the faults production must survive (a lost Ray worker node, a killed agent, an
API restart; :mod:`deploy.batch`), then checks that every job reached a final state exactly once::

    python -m deploy.topology --jobs 4 --faults worker-node,agent,api

Everything it keeps goes under ``--root`` (logs of every part, the shared experiment storage,
the MLflow artifacts); the two databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.batch import FAULTS, BatchReport, job_specs, run_batch
from service.db import make_engine, scratch_databases
from service.process import launch
from service.records import EventRecord
from service.settings import Settings
from service.states import JobState
from service.store import JobStore
from service.users import new_token
from strsearch.cli.processes import Child, free_port, spawn
from strsearch.cli.ray_node import ray_env, start_ray_node
from strsearch.client import Client

if TYPE_CHECKING:
    from workers.mlflow_server import LocalServer

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
AGENT_STOP_TIMEOUT_S = 90.0


# --- the topology ----------------------------------------------------------------------------


@dataclass
class TopologyConfig:
    """What to start.

    Attributes:
        root: folder of the logs, the shared experiment storage and the MLflow artifacts.
        service_database: SQLAlchemy URL of the API's (empty or migrated) database.
        mlflow_database: backend store URI of the MLflow server.
        nodes: Ray nodes: a head plus ``nodes - 1`` worker nodes.
        cpus_per_node: CPUs each node offers (one trial takes one).
        agents: agents, each running one job at a time.
        lease_seconds: the service's lease: short, so a killed agent's job returns soon, and
            longer than an API restart plus a heartbeat interval, so a restart costs no lease.
    """

    root: Path
    service_database: str
    mlflow_database: str
    nodes: int = 2
    cpus_per_node: int = 1
    agents: int = 2
    lease_seconds: float = 20.0


@dataclass
class Topology:
    """The running processes of a :class:`TopologyConfig` (see the module docstring)."""

    config: TopologyConfig
    admin_token: str = field(default_factory=new_token)
    worker_token: str = field(default_factory=new_token)
    ray_token: str = field(default_factory=lambda: secrets.token_hex(32))
    api_url: str = ""
    mlflow_url: str = ""
    ray_address: str = ""
    api: Child | None = None
    mlflow: LocalServer | None = None
    nodes: dict[int, Child] = field(default_factory=dict)
    agents: dict[int, Child] = field(default_factory=dict)
    _api_port: int = 0
    _ray_temp: Path | None = None

    @property
    def root(self) -> Path:
        """Where everything is kept."""
        return self.config.root

    @property
    def storage(self) -> Path:
        """The experiment storage every agent and Ray node shares."""
        return self.root / "shared" / "agent"

    # --- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Start MLflow, the API, the Ray nodes and the agents; on failure stop what started."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._start_mlflow()
            self.start_api()
            self._start_head()
            for index in range(1, self.config.nodes):
                self.start_worker_node(index)
            for index in range(self.config.agents):
                self.start_agent(index)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the agents (they hand their jobs back), the API, the Ray nodes and MLflow."""
        for child in self.agents.values():
            child.stop(AGENT_STOP_TIMEOUT_S)
        self.agents.clear()
        if self.api is not None:
            self.api.stop()
            self.api = None
        for index in sorted(self.nodes, reverse=True):  # the head last
            self.nodes[index].stop()
        self.nodes.clear()
        if self._ray_temp is not None:
            shutil.rmtree(self._ray_temp, ignore_errors=True)
            self._ray_temp = None
        if self.mlflow is not None:
            from workers.mlflow_server import stop_server

            stop_server(self.mlflow)
            self.mlflow = None

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_mlflow(self) -> None:
        from workers.mlflow_server import start_server  # imports Ray and torch

        self.mlflow = start_server(
            self.root / "mlflow",
            backend_store_uri=self.config.mlflow_database,
            proxy_artifacts=True,  # as in production, where workers run on other machines
            timeout=120.0,
        )
        self.mlflow_url = self.mlflow.url

    def start_api(self) -> None:
        """Start the API (on the port it had, after a restart) and wait until it serves."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRSEARCH_")}
        env |= {
            "STRSEARCH_DATABASE_URL": self.config.service_database,
            "STRSEARCH_BOOTSTRAP_TOKEN": self.admin_token,
            "STRSEARCH_WORKER_TOKEN": self.worker_token,
            "STRSEARCH_LEASE_SECONDS": str(self.config.lease_seconds),
        }
        log = self.root / "logs" / "api.log"
        process, url = launch(env, log, port=self._api_port)
        self.api = Child("API", process, log)
        self.api_url, self._api_port = url, int(url.rsplit(":", 1)[1])

    def _start_head(self) -> None:
        port = free_port()
        # short: Ray's socket paths must fit in 107 bytes
        self._ray_temp = Path(tempfile.mkdtemp(prefix="strs-topo-", dir="/tmp"))
        self.nodes[0] = start_ray_node(
            "Ray head",
            self.root / "logs" / "ray-head.log",
            ray_env(os.environ, self.ray_token),
            head_port=port,
            temp_dir=self._ray_temp,
            cpus=self.config.cpus_per_node,
        )
        self.ray_address = f"127.0.0.1:{port}"

    def start_worker_node(self, index: int) -> None:
        """Start Ray worker node ``index`` (>= 1), joining the head."""
        self.nodes[index] = start_ray_node(
            f"Ray worker node {index}",
            self.root / "logs" / f"ray-worker-{index}.log",
            ray_env(os.environ, self.ray_token),
            address=self.ray_address,
            cpus=self.config.cpus_per_node,
        )

    def start_agent(self, index: int) -> None:
        """Start agent ``index`` (named ``agent-<index>``) on the head's machine."""
        env = ray_env(os.environ, self.ray_token)
        env = {k: v for k, v in env.items() if not k.startswith("STRSEARCH_")}
        env |= {
            "STRSEARCH_TOKEN": self.worker_token,
            "RAY_ADDRESS": self.ray_address,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable, "-m", "strsearch.cli", "agent", "--server", self.api_url,
            "--storage", str(self.storage), "--name", f"agent-{index}", "--poll", "1",
        ]  # fmt: skip
        self.agents[index] = spawn(
            f"agent-{index}", command, self.root / "logs" / f"agent-{index}.log", env
        )

    # --- faults ------------------------------------------------------------------------------

    def kill_worker_node(self, index: int) -> None:
        """SIGKILL worker node ``index`` with every process on it, as a lost machine."""
        self.nodes.pop(index).kill()

    def kill_agent(self, index: int) -> None:
        """SIGKILL agent ``index`` and its search (nothing is handed back)."""
        self.agents.pop(index).kill()

    def kill_api(self) -> None:
        """SIGKILL the API."""
        if self.api is not None:
            self.api.kill()
            self.api = None

    # --- reading what happened ---------------------------------------------------------------

    def agent_of(self, job_id: str) -> int | None:
        """The index of the agent that claimed the job last (from its events), if one of ours."""
        claims = [e.agent for e in self.events(job_id) if e.to_state is JobState.RUNNING]
        if not claims or not str(claims[-1]).startswith("agent-"):
            return None
        return int(str(claims[-1]).removeprefix("agent-"))

    def client(self) -> Client:
        """A client of the bootstrap admin (sees every job), retrying through restarts."""
        return Client(self.api_url, self.admin_token, retry_seconds=60.0)

    def events(self, job_id: str) -> list[EventRecord]:
        """The job's changes of state, oldest first, from the service's database."""
        engine = make_engine(self.config.service_database)
        try:
            defaults = Settings()
            store = JobStore(
                engine, lease_seconds=defaults.lease_seconds, max_attempts=defaults.max_attempts
            )
            return store.events(job_id)
        finally:
            engine.dispose()

    def trial_reports(self, job_id: str) -> dict[str, list[dict[str, Any]]]:
        """Trial directory → its epoch reports (``node_id``, ``training_iteration``), read from
        the Tune results the trials wrote into the shared storage."""
        reports = {}
        for result_file in sorted((self.storage / job_id).glob("*/*/result.json")):
            lines = result_file.read_text().splitlines()
            reports[result_file.parent.name] = [
                {k: r.get(k) for k in ("node_id", "training_iteration")}
                for r in map(json.loads, filter(None, lines))
            ]
        return reports


def run_fresh(
    postgres: str,
    root: Path,
    specs: Sequence[dict[str, Any]],
    faults: Sequence[str] = (),
    **shape: Any,
) -> BatchReport:
    """Run a batch on a topology of its own: two new databases on the PostgreSQL server of
    ``postgres`` (dropped afterwards), processes under ``root/<random>``, and ``shape`` the
    other :class:`TopologyConfig` fields (``nodes``, ``cpus_per_node``, ``agents``, …)."""
    suffix = uuid.uuid4().hex[:8]
    names = [f"strsearch_topology_{suffix}", f"mlflow_topology_{suffix}"]
    with scratch_databases(postgres, names) as (service_db, mlflow_db):
        config = TopologyConfig(root / suffix, service_db, mlflow_db, **shape)
        with Topology(config) as topology:
            print(
                f"API {topology.api_url}  MLflow {topology.mlflow_url}  "
                f"Ray {topology.ray_address}  logs {config.root / 'logs'}",
                flush=True,
            )
            return run_batch(topology, specs, faults)


# --- the script ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deploy.topology``: start the topology, run a batch, print what happened."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.topology", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=4, help="jobs in the batch")
    parser.add_argument("--nodes", type=int, default=2, help="Ray nodes (head + workers)")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per trial")
    parser.add_argument("--max-trials", type=int, default=3, help="trial budget per job")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="training batch size (smaller: longer epochs)"
    )
    parser.add_argument(
        "--faults", default="", help=f"comma-separated, in order: {', '.join(FAULTS)}"
    )
    parser.add_argument(
        "--no-early-stopping",
        action="store_true",
        help="trials train all their epochs (so a fault finds the trial it aims at training)",
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL of PostgreSQL")
    parser.add_argument("--root", type=Path, default=Path("runs/topology"))
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    if unknown := sorted(set(faults) - set(FAULTS)):
        parser.error(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    specs = job_specs(
        args.jobs,
        args.epochs,
        args.max_trials,
        args.batch_size,
        early_stopping=not args.no_early_stopping,
    )
    shape = {"nodes": args.nodes, "cpus_per_node": args.cpus_per_node, "agents": args.agents}
    report = run_fresh(args.postgres, args.root.resolve(), specs, faults, **shape)
    report.print()
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0 if report.exactly_once else 1


if __name__ == "__main__":
    sys.exit(main())
