"""benchmarks/topology.py's table: speed-up against one node, overhead against two."""

from __future__ import annotations

import pytest

from benchmarks.topology import print_table, table
from deploy.batch import BatchReport, FaultRecord, JobOutcome


def _report(wall_s: float, *states: str, faults: tuple[str, ...] = ()) -> BatchReport:
    jobs = [JobOutcome(str(i), s, 1, 1, 3, 0.9, ["agent-0"]) for i, s in enumerate(states)]
    return BatchReport(wall_s, jobs, [FaultRecord(kind, 1.0, "x") for kind in faults])


def test_ratios_compare_each_scenario_with_its_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    reports = {
        "1 node": _report(200.0, "succeeded", "unreached"),
        "2 nodes": _report(100.0, "succeeded", "succeeded"),
        "2 nodes, node lost": _report(125.0, "succeeded", "succeeded", faults=("worker-node",)),
    }
    rows = {row["scenario"]: row for row in table(reports)}
    assert list(rows) == ["1 node", "2 nodes", "2 nodes, node lost"]  # the fixed order
    assert rows["1 node"]["ratio"] is None
    assert rows["2 nodes"]["ratio"] == 2.0  # twice as fast as one node
    assert rows["2 nodes, node lost"]["ratio"] == 0.8
    assert rows["2 nodes, node lost"]["delta_s"] == 25.0  # the lost node cost 25 s
    assert rows["1 node"]["states"] == {"succeeded": 1, "unreached": 1}
    assert rows["2 nodes, node lost"]["faults"] == ["worker-node"]
    assert all(row["exactly_once"] for row in rows.values())

    print_table(list(rows.values()))
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert header.count("|") == out.splitlines()[2].count("|")  # every column has a heading
    assert "| 2 nodes | 100.0 | 1 node | 2.00× | -100.0 | 6 | 2 | 2 succeeded | True |" in out
