"""The tracking-overhead benchmark's summaries, table and verdict, from made-up timings."""

from __future__ import annotations

import math

import pytest

from benchmarks._timed_tracker import PHASES
from benchmarks._tracking_summary import (
    ArmSummary,
    TrialTiming,
    format_table,
    goal_report,
    summarize,
)


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
