"""A batch of jobs through a running topology, with the faults production must survive.

:func:`run_batch` submits jobs concurrently through the REST API, follows them to their final
states and lets a :class:`FaultPlan` inject faults, in the order given, each once the batch has
reached the point where it matters:

- ``worker-node``: while every Ray node runs a trial that has saved a checkpoint, SIGKILL the
  last worker node with everything on it. The node stays lost: Tune (``FailureConfig``) retries
  its trial from the last checkpoint on a surviving node.
- ``agent``: SIGKILL the agent running a job (its search dies with it) and start it again, as a
  restart policy would. The job's lease expires and an agent resumes its Tune experiment from the
  shared storage.
- ``api``: SIGKILL the API and start it again on the same port 3 s later; agents and clients
  retry through the gap.

A fault spares the jobs an earlier one hit, so each one's evidence (a trial that moved to another
node, a job's second attempt) stays its own. The :class:`BatchReport` says what production
promises to check: every job in a final state,
reached by exactly one transition in the job's events, and per fault what it did.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from service.states import FINAL, JobState

if TYPE_CHECKING:
    from deploy.topology import Topology

FAULTS = ("worker-node", "agent", "api")
FINAL_STATES = frozenset(state.value for state in FINAL)
API_DOWN_S = 3.0
#: time the system gets to react to a fault before the next one is injected
SETTLE_S = 15.0
POLL_S = 1.0


def say(message: str, started: float) -> None:
    """Print ``message`` with the seconds since ``started`` (the batch's progress)."""
    print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)


def job_specs(
    count: int, epochs: int, max_trials: int, batch_size: int = 128, *, early_stopping: bool = True
) -> list[dict[str, Any]]:
    """``count`` small digits jobs with targets 0.80, 0.85, 0.90, 0.95, … (one trial at a time
    each, so a job holds one CPU of the cluster and the batch spreads over the nodes). A smaller
    ``batch_size`` makes each epoch longer (more steps) for the same data. Without
    ``early_stopping`` every trial trains all its epochs: the band rule may stop one a few epochs
    in, sooner than the jobs' progress (a heartbeat old) shows, so a fault aimed at a training
    trial could find it ended."""
    targets = [0.8, 0.85, 0.9, 0.95]
    return [
        {
            "model": "digits_cnn",
            "dataset": "digits",
            "target_sparsity": targets[i % len(targets)],
            "tolerance": 0.02,
            "training": {"epochs": epochs, "batch_size": batch_size},
            "search": {
                "max_trials": max_trials,
                "parallel_trials": 1,
                "seed": i,
                "early_stopping": early_stopping,
            },
        }
        for i in range(count)
    ]


@dataclass
class FaultRecord:
    """One injected fault: its kind, when (seconds into the batch), on what, and what followed."""

    kind: str
    at_s: float
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """A job at the end of the batch."""

    id: str
    state: str
    attempts: int
    final_transitions: int
    trials: int
    sparsity: float | None
    agents: list[str]
    weight_decays: list[float] = field(default_factory=list)


@dataclass
class BatchReport:
    """What :func:`run_batch` saw."""

    wall_s: float
    jobs: list[JobOutcome]
    faults: list[FaultRecord]

    @property
    def exactly_once(self) -> bool:
        """Every job is in a final state, reached by exactly one transition."""
        return all(j.state in FINAL_STATES and j.final_transitions == 1 for j in self.jobs)

    def to_json(self) -> dict[str, Any]:
        """Plain data (``--json``)."""
        return {"exactly_once": self.exactly_once} | asdict(self)

    def print(self) -> None:
        """A table of the jobs, the faults and the verdict."""
        print(f"\nbatch wall time {self.wall_s:.1f} s")
        print(
            f"{'job':<34} {'state':<10} {'attempts':>8} {'final':>5} {'trials':>6} {'sparsity':>8}"
        )
        for job in self.jobs:
            sparsity = f"{job.sparsity:.4f}" if job.sparsity is not None else "-"
            print(
                f"{job.id:<34} {job.state:<10} {job.attempts:>8} {job.final_transitions:>5} "
                f"{job.trials:>6} {sparsity:>8}"
            )
        for fault in self.faults:
            print(f"fault {fault.kind} at {fault.at_s:.1f} s on {fault.target}: {fault.detail}")
        print(
            "every job reached a final state exactly once"
            if self.exactly_once
            else "NOT every job reached a final state exactly once"
        )


def running_trials(jobs: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(job id, trial row) of every running trial, from the jobs' ``progress``, that has
    finished an epoch (so saved a checkpoint) and has at least half of its epochs to go.

    The rows are as old as the agent's last heartbeat (a few seconds while trials report), and
    a trial still logs its model after its last epoch: a trial half-way through is one that
    still trains when a fault lands.
    """
    found = []
    for job in jobs:
        if job["state"] != JobState.RUNNING.value:
            continue
        epochs = int(job["spec"]["training"]["epochs"])
        for trial in (job.get("progress") or {}).get("trials") or ():
            if trial.get("state") == "running" and 1 <= (trial.get("epoch") or 0) <= epochs // 2:
                found.append((job["id"], trial))
    return found


class FaultPlan:
    """Injects the requested faults in order, each when its moment has come (see the module)."""

    def __init__(self, topology: Topology, kinds: Sequence[str], started: float) -> None:
        unknown = set(kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        self.topology = topology
        self.pending = list(kinds)
        self.records: list[FaultRecord] = []
        self.started = started
        self._quiet_until = 0.0
        #: jobs an earlier fault hit: a later fault spares them, so each fault's evidence (a
        #: trial that moved nodes, a second attempt) stays its own
        self._hit: set[str] = set()

    def _now(self) -> float:
        return time.monotonic() - self.started

    def step(self, jobs: list[dict[str, Any]]) -> None:
        """Look at the jobs and inject the next fault if its moment has come."""
        if not self.pending or self._now() < self._quiet_until:
            return
        inject = {"worker-node": self._lose_node, "agent": self._lose_agent, "api": self._lose_api}
        record = inject[self.pending[0]](jobs)
        if record is not None:
            self.pending.pop(0)
            self.records.append(record)
            self._quiet_until = self._now() + SETTLE_S

    def _lose_node(self, jobs: list[dict[str, Any]]) -> FaultRecord | None:
        topology = self.topology
        workers = [index for index in topology.nodes if index > 0]
        if not workers or len(running_trials(jobs)) < len(topology.nodes):
            return None  # not every node runs a checkpointed trial yet
        index = max(workers)
        self._hit |= {job_id for job_id, _ in running_trials(jobs)}
        topology.kill_worker_node(index)
        say(f"fault: killed Ray worker node {index} (it stays lost)", self.started)
        return FaultRecord("worker-node", self._now(), f"ray-worker-{index}")

    def _lose_agent(self, jobs: list[dict[str, Any]]) -> FaultRecord | None:
        topology = self.topology
        for job_id, _ in running_trials(jobs):
            index = topology.agent_of(job_id)
            if job_id in self._hit or index is None or index not in topology.agents:
                continue
            self._hit.add(job_id)
            topology.kill_agent(index)
            topology.start_agent(index)
            say(f"fault: killed agent-{index} running job {job_id}; started again", self.started)
            return FaultRecord("agent", self._now(), f"agent-{index}", {"job": job_id})
        return None

    def _lose_api(self, jobs: list[dict[str, Any]]) -> FaultRecord | None:
        if not any(job["state"] == JobState.RUNNING.value for job in jobs):
            return None
        self.topology.kill_api()
        say("fault: killed the API", self.started)
        time.sleep(API_DOWN_S)
        self.topology.start_api()
        say("the API started again on the same port", self.started)
        return FaultRecord("api", self._now(), "api", {"down_s": API_DOWN_S})


def run_batch(
    topology: Topology,
    specs: Sequence[dict[str, Any]],
    faults: Sequence[str] = (),
    timeout: float = 1800.0,
) -> BatchReport:
    """Submit ``specs`` concurrently, inject ``faults``, follow every job to a final state."""
    started = time.monotonic()
    plan = FaultPlan(topology, faults, started)
    batch = uuid.uuid4().hex[:8]
    with topology.client() as client:

        def submit(item: tuple[int, dict[str, Any]]) -> str:
            job = client.submit(item[1], idempotency_key=f"topology-{batch}-{item[0]}")
            return str(job["id"])

        with ThreadPoolExecutor(max_workers=max(len(specs), 1)) as pool:
            ids = list(pool.map(submit, enumerate(specs)))
        say(f"submitted {len(ids)} jobs concurrently", started)
        seen: dict[str, str] = {}
        while True:
            jobs = [client.job(job_id) for job_id in ids]
            for job in jobs:
                if seen.get(job["id"]) != job["state"]:
                    seen[job["id"]] = job["state"]
                    say(f"job {job['id']}: {job['state']} (attempt {job['attempts']})", started)
            if all(job["state"] in FINAL_STATES for job in jobs):
                break
            plan.step(jobs)
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"jobs not finished after {timeout:g} s: {seen}")
            time.sleep(POLL_S)
    wall = time.monotonic() - started
    if plan.pending:
        say(f"faults never injected (their moment never came): {plan.pending}", started)
    for record in plan.records:
        if record.kind == "worker-node":
            record.detail["moved_trials"] = moved_trials(topology, ids)
    return BatchReport(
        wall_s=wall, jobs=[_outcome(topology, job) for job in jobs], faults=plan.records
    )


def _outcome(topology: Topology, job: dict[str, Any]) -> JobOutcome:
    events = topology.events(job["id"])
    result = job.get("result") or {}
    return JobOutcome(
        id=job["id"],
        state=job["state"],
        attempts=job["attempts"],
        final_transitions=sum(e.to_state in FINAL for e in events),
        trials=len(result.get("trials") or ()),
        sparsity=(result.get("best") or {}).get("sparsity"),
        agents=sorted({e.agent for e in events if e.agent}),
        weight_decays=[t["weight_decay"] for t in result.get("trials") or ()],
    )


def moved_trials(topology: Topology, job_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Trials whose epochs ran on more than one node: where each went on and from which epoch
    (an epoch after the first: it went on from a checkpoint, not from the start)."""
    moved = []
    for job_id in job_ids:
        for trial, reports in topology.trial_reports(job_id).items():
            for before, after in itertools.pairwise(reports):
                if before["node_id"] != after["node_id"]:
                    moved.append(
                        {
                            "job": job_id,
                            "trial": trial,
                            "resumed_at_epoch": after["training_iteration"],
                            "epochs_reported": [r["training_iteration"] for r in reports],
                        }
                    )
    return moved
