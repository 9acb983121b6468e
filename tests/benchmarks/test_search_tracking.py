"""The whole-search tracking benchmark's bookkeeping (its searches run in the benchmark itself)."""

from __future__ import annotations

import pytest

from benchmarks.search_tracking import (
    SearchTiming,
    TrialPath,
    format_table,
    run_benchmark,
    setup_spec,
    summarize,
)

PATH: TrialPath = [(0.0095, 0.88), (0.012, 0.902)]


def timing(arm: str, repeat: int, seconds: float, path: TrialPath | None = None) -> SearchTiming:
    return SearchTiming("digits", arm, repeat, seconds, 2, 60, PATH if path is None else path)


def test_setup_spec_is_the_default_job_at_90_percent_with_the_given_parallelism() -> None:
    spec = setup_spec("mnist1d", parallel=1)
    assert (spec.model, spec.dataset, spec.target_sparsity) == ("mnist1d_cnn", "mnist1d", 0.9)
    assert spec.search.parallel_trials == 1
    assert spec.training.epochs == 30
    assert setup_spec("digits", parallel=2, epochs=3).training.epochs == 3


def test_summarize_pairs_rounds_and_takes_ratios_to_off() -> None:
    timings = [
        timing("off", 0, 20.0),
        timing("on", 0, 21.0),
        timing("on", 1, 23.0),
        timing("off", 1, 21.0),
        timing("off", 2, 30.0),  # a slow round moves both arms
        timing("on", 2, 30.5),
    ]
    off, on = summarize(timings)
    assert (off.arm, off.seconds, off.ratio, off.diff) == ("off", 21.0, 1.0, None)
    assert on.seconds == 23.0
    assert on.ratio == pytest.approx(23.0 / 21.0)
    assert on.diff == 1.0  # median of +1.0, +2.0, +0.5
    assert on.per_epoch == pytest.approx(23.0 / 60)
    assert on.same_trials and off.same_trials


def test_summarize_flags_searches_that_took_another_path() -> None:
    timings = [timing("off", 0, 20.0), timing("on", 0, 21.0, path=[*PATH, (0.011, 0.9)])]
    assert [row.same_trials for row in summarize(timings)] == [False, False]


def test_format_table_shows_the_difference_per_round_for_on_only() -> None:
    table = format_table(summarize([timing("off", 0, 20.0), timing("on", 0, 21.0)]))
    lines = table.splitlines()
    assert len(lines) == 4
    assert "| digits | off |" in lines[2] and "| – |" in lines[2]
    assert "+1.00 s (+5.0%)" in lines[3] and lines[3].endswith("| yes |")


@pytest.mark.parametrize(
    ("setups", "repeats", "parallel"), [(["cifar"], 1, 1), (["digits"], 0, 1), (["digits"], 1, 0)]
)
def test_run_benchmark_rejects_bad_arguments_before_starting_ray(
    setups: list[str], repeats: int, parallel: int
) -> None:
    with pytest.raises(ValueError, match="need setups"):
        run_benchmark(setups, repeats=repeats, parallel=parallel, epochs=2, uri="http://unused")
