"""Smoke tests of the tracking-overhead benchmark: real trials, a real MLflow server, no timing
assertions (the numbers are the benchmark's output, not a property of the code)."""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchmarks._timed_tracker import PHASES
from benchmarks.tracking_overhead import (
    ArmSummary,
    Job,
    TrialTiming,
    format_table,
    goal_report,
    main,
    run_benchmark,
    run_trial,
    summarize,
    trial_spec,
)
from workers.mlflow_server import LocalServer
from workers.tracking import MODEL_URI_TAG
from workers.tracking.common import using_tracking_uri

REPO = Path(__file__).resolve().parents[2]


def _timing(
    arm: str,
    seconds: float,
    repeat: int = 0,
    sparsity: float = 0.8,
    others: tuple[str, ...] = (),
    *,
    phase: float = 0.1,
    thread_cpu: float = 0.0,
    server_cpu: float = 0.0,
    training: float = 0.0,
) -> TrialTiming:
    phases = dict.fromkeys(PHASES, 0.0 if arm == "off" else phase)
    return TrialTiming(
        "digits", arm, repeat, seconds, phases, sparsity, 0.9, None, others,
        training=training, thread_cpu=thread_cpu, server_cpu=server_cpu,
    )  # fmt: skip


def test_summarize_takes_medians_and_ratios_to_off_without_the_warmup() -> None:
    timings = [
        _timing("off", 100.0, repeat=-1),  # warm-up: left out
        _timing("on", 100.0, repeat=-1),
        *(_timing("off", s, repeat=r, training=s - 1) for r, s in enumerate([10.0, 12.0, 11.0])),
        *(_timing("on", s, repeat=r, training=s - 2) for r, s in enumerate([12.0, 13.0, 14.0])),
    ]
    off, on = summarize(timings, epochs=30)
    assert (off.arm, off.seconds, off.ratio, off.repeats) == ("off", 11.0, 1.0, 3)
    assert on.seconds == 13.0 and on.ratio == pytest.approx(13.0 / 11.0)
    assert on.added == pytest.approx(2.0)
    assert on.paired == pytest.approx(2.0)  # round by round: +2, +1, +3
    assert on.training_paired == pytest.approx(1.0)  # each trial's epochs: 1 s less than it
    assert on.own == pytest.approx(0.1 * len(PHASES))
    assert on.indirect == pytest.approx(2.0 - 0.1 * len(PHASES))
    assert on.all_seconds == (12.0, 13.0, 14.0)
    assert on.same_result and on.epochs == 30


def test_goal_report_judges_the_charged_time_and_flags_changed_training() -> None:
    phase = 0.2 / len(PHASES)  # own time 0.2 s
    timings = [
        _timing("off", 10.0),
        # a noisy round: 9% more wall time, but only 4% charged
        _timing("on", 10.9, phase=phase, thread_cpu=0.05, server_cpu=0.15),
        _timing("lean", 10.2, sparsity=0.7, phase=phase, thread_cpu=0.1, server_cpu=0.3),
        _timing("far", 10.3, phase=phase, server_cpu=math.nan),  # a server elsewhere
    ]
    rows = summarize(timings, epochs=2)
    assert not rows[0].same_result
    assert rows[1].charged == pytest.approx(0.4)
    assert goal_report(rows) == [
        "digits/on: charged 4.0% of the trial (own 2.0%, thread 0.5%, server 1.5%); wall time "
        "+9.0% (medians), +9.0% per round (median) (goal <= 5%): meets on charged",
        "digits/lean: charged 6.0% of the trial (own 2.0%, thread 1.0%, server 3.0%); wall time "
        "+2.0% (medians), +2.0% per round (median) (goal <= 5%): MISSES on charged",
        "digits/far: wall time +3.0% (medians), +3.0% per round (median); own calls 2.0% "
        "(goal <= 5%): meets on wall time",
        "WARNING digits: the arms ended at different sparsity or accuracy",
    ]


def test_goal_report_says_how_many_trials_ran_beside_another_benchmark() -> None:
    busy = ("python -m benchmarks.search_efficiency",)
    timings = [_timing("off", 10.0), _timing("on", 10.2, others=busy), _timing("on", 10.3)]
    rows = summarize(timings, epochs=2)
    assert [r.overlapped for r in rows] == [0, 1]
    assert goal_report(rows)[-1] == "WARNING 1 of 3 timed trials ran beside another benchmark"


def test_format_table_has_one_row_per_arm_and_no_phases_for_off() -> None:
    phases = dict.fromkeys(PHASES, 0.5)
    rows = [
        ArmSummary(
            "digits", "off", 30, 3, 7.0, 1.0, 0.0, 0.0, dict.fromkeys(PHASES, 0.0), 0, 0, True
        ),
        ArmSummary(
            "digits",
            "on",
            30,
            3,
            10.0,
            10 / 7,
            3.0,
            2.0,
            phases,
            2.5,
            0.5,
            True,
            figures=0.2,
            thread_cpu=0.1,
            server_cpu=0.3,
            charged=2.9,
            training_paired=0.4,
        ),
    ]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4
    assert all(line.count("|") == 15 + len(PHASES) for line in lines)
    assert lines[2].endswith("| 7.00 | 1.000 |" + " – |" * (9 + len(PHASES)))
    cells = " +3.00 | +2.00 | 2.50 |" + " 0.50 |" * len(PHASES)
    cells += " +0.50 | 0.20 | 0.10 | 0.30 | 2.90 | +0.40 |"
    assert lines[3].endswith("| 10.00 | 1.429 |" + cells)


def test_the_trial_gets_the_threads_asked_for() -> None:
    assert trial_spec("digits").resources.cpus_per_trial == 1  # as measured before 2026-12-06
    spec = trial_spec("mnist1d", 3, threads=2)
    assert spec.resources.cpus_per_trial == 2 and spec.training.epochs == 3


def test_run_benchmark_rejects_unknown_names_and_a_missing_baseline() -> None:
    for kwargs in (
        {"setups": ["cifar10"]},
        {"arms": ["on"]},
        {"arms": ["off", "verbose"]},
        {"repeats": 0},
    ):
        with pytest.raises(ValueError, match="including 'off'"):
            run_benchmark(**kwargs)


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# mlflow.pyfunc, imported by the first log_model call, warns about one of its own type hints
IMPORT_WARNING = "ignore:.*Any type hint is inferred as AnyType:UserWarning"


@pytest.mark.slow
@pytest.mark.filterwarnings(IMPORT_WARNING)
def test_quick_run_trains_both_arms_against_its_own_server_and_stops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    out = tmp_path / "result.json"
    assert main(["--quick", "--threads", "2", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    off, on = payload["summaries"]
    assert (off["setup"], off["arm"], on["arm"]) == ("digits", "off", "on")
    assert off["epochs"] == 2 and off["repeats"] == on["repeats"] == 1
    assert on["same_result"]  # tracking did not change training
    assert all(on["phases"][p] > 0 for p in ("start", "plots", "upload", "end", "models"))
    assert [t["arm"] for t in payload["trials"]] == ["off", "on"]
    assert payload["trials"][1]["run_id"] and payload["trials"][0]["run_id"] is None
    meta = payload["meta"]
    assert meta["server"] == "started by the benchmark" and meta["machine_after"]["loadavg"]
    assert not _answers(meta["tracking_uri"])  # stopped
    assert os.environ.get("MLFLOW_TRACKING_URI") == uri_before  # the session's server again
    table = capsys.readouterr().out
    assert "| digits | 2 | on |" in table and "digits/on: charged" in table
    assert on["thread_cpu"] > 0 and on["server_cpu"] >= 0  # the server it started was found


@pytest.mark.slow
@pytest.mark.filterwarnings(IMPORT_WARNING)
def test_arms_track_what_they_say(mlflow_server: LocalServer) -> None:
    job = Job.create(mlflow_server.url, experiment=f"test-overhead-{time.time_ns()}")
    spec = trial_spec("digits", epochs=1)
    trackers = {}
    with using_tracking_uri():
        for arm in ("off", "on", "no-models"):
            seconds, trackers[arm], result = run_trial(spec, arm, job, f"t-{arm}")
            assert seconds > 0 and result.final.epoch == 1
    on, bare = trackers["on"], trackers["no-models"]
    assert trackers["off"] is None and on is not None and bare is not None
    assert on.seconds["models"] > 0 and bare.seconds["models"] == 0
    assert all(on.seconds[p] > 0 for p in ("start", "plots", "upload", "end"))
    assert on.figure_seconds > 0 and bare.figure_seconds > 0  # drawn on the sender thread
    # the sender thread opened the run and sent the params; the server's CPU was read
    assert job.server_pids and on.thread_cpu > 0 and on.server_cpu >= 0
    runs = {arm: job.client.get_run(t.run_id) for arm, t in (("on", on), ("no-models", bare))}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert all(
        len(job.client.get_metric_history(r.info.run_id, "sparsity")) == 1 for r in runs.values()
    )
    outputs = {arm: r.outputs.model_outputs if r.outputs else [] for arm, r in runs.items()}
    assert len(outputs["on"]) == 2 and outputs["no-models"] == []
    assert (
        MODEL_URI_TAG in runs["on"].data.tags and MODEL_URI_TAG not in runs["no-models"].data.tags
    )
