"""The production topology on one machine: one Ray node vs two, and what faults cost.

Runs the same batch of jobs (``deploy.topology.job_specs``: small digits searches, one trial at
a time each) through the whole topology of ``deploy/topology.py`` (PostgreSQL-backed API, MLflow
on PostgreSQL, Ray head + worker nodes, two agents), once per scenario, each on fresh databases
and a fresh cluster:

- ``1 node``: the Ray head alone, ``--cpus-per-node`` CPUs;
- ``2 nodes``: the head and one worker node, ``--cpus-per-node`` CPUs each;
- ``2 nodes, agent killed``: as ``2 nodes``, an agent running a job SIGKILLed and restarted;
- ``2 nodes, node lost``: as ``2 nodes``, the worker node SIGKILLed during a trial (restarted
  10 s later).

It prints one table: the batch's wall time, and against its baseline (``1 node`` for ``2
nodes``, ``2 nodes`` for the faults) the speed-up (baseline wall / wall) and the difference in
wall time (what the fault cost); the jobs' final states and whether every job reached its final
state exactly once. On the 2-core development box each node gets one core, so "two nodes"
is two one-core nodes on one machine: it measures how the batch spreads over the cluster's
nodes, with the API, MLflow, PostgreSQL and the agents sharing the same two cores.

Usage::

    python -m benchmarks.topology                       # 4 jobs, 4 epochs, 3 trials each
    python -m benchmarks.topology --jobs 4 --epochs 6 --json runs/topology.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.batch import BatchReport, job_specs
from deploy.topology import DEFAULT_POSTGRES, run_fresh


@dataclass(frozen=True)
class Scenario:
    """One run of the batch."""

    name: str
    nodes: int
    faults: tuple[str, ...] = ()
    baseline: str | None = None  # the scenario its wall time is compared with


SCENARIOS = (
    Scenario("1 node", 1),
    Scenario("2 nodes", 2, baseline="1 node"),
    Scenario("2 nodes, agent killed", 2, ("agent",), baseline="2 nodes"),
    Scenario("2 nodes, node lost", 2, ("worker-node",), baseline="2 nodes"),
)


def run_scenario(scenario: Scenario, args: argparse.Namespace, folder: Path) -> BatchReport:
    """The batch on a fresh topology shaped as ``scenario``."""
    specs = job_specs(args.jobs, args.epochs, args.max_trials, args.batch_size)
    shape = {"nodes": scenario.nodes, "cpus_per_node": args.cpus_per_node, "agents": args.agents}
    return run_fresh(args.postgres, folder, specs, scenario.faults, **shape)


def table(reports: dict[str, BatchReport]) -> list[dict[str, Any]]:
    """One row per scenario (what the benchmark prints and writes)."""
    rows = []
    for scenario in SCENARIOS:
        if scenario.name not in reports:
            continue
        report = reports[scenario.name]
        base = reports.get(scenario.baseline or "")
        states: dict[str, int] = {}
        for job in report.jobs:
            states[job.state] = states.get(job.state, 0) + 1
        rows.append(
            {
                "scenario": scenario.name,
                "wall_s": round(report.wall_s, 1),
                "vs": scenario.baseline,
                "ratio": round(base.wall_s / report.wall_s, 2) if base else None,
                "delta_s": round(report.wall_s - base.wall_s, 1) if base else None,
                "trials": sum(job.trials for job in report.jobs),
                "attempts": sum(job.attempts for job in report.jobs),
                "states": states,
                "exactly_once": report.exactly_once,
                "faults": [f.kind for f in report.faults],
            }
        )
    return rows


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """The rows as a Markdown table."""
    print(
        "| scenario | wall s | compared with | speed-up | Δ wall s | trials | attempts | states "
        "| exactly once |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "-"
        delta = f"{row['delta_s']:+.1f}" if row["delta_s"] is not None else "-"
        states = ", ".join(f"{n} {s}" for s, n in sorted(row["states"].items()))
        print(
            f"| {row['scenario']} | {row['wall_s']:.1f} | {row['vs'] or '-'} | {ratio} | {delta} | "
            f"{row['trials']} | {row['attempts']} | {states} | {row['exactly_once']} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.topology``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.topology")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-trials", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--scenarios",
        nargs="*",
        default=[s.name for s in SCENARIOS],
        help="names of the scenarios to run (default: all)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    reports: dict[str, BatchReport] = {}
    with tempfile.TemporaryDirectory(prefix="strs-topology-") as folder:
        for scenario in SCENARIOS:
            if scenario.name in args.scenarios:
                print(f"--- {scenario.name} ---", flush=True)
                reports[scenario.name] = run_scenario(scenario, args, Path(folder))
    rows = table(reports)
    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["exactly_once"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
