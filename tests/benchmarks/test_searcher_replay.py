"""The searcher replay: sequential searches driven against recorded (here: made-up) training."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks.search_efficiency import bench_spec
from benchmarks.searcher_replay import (
    SLOTS,
    TrajectoryCache,
    main,
    make_searcher,
    replay,
    simulate,
    train_trajectory,
)
from workers.early_stop import DEFAULT_MARGINS

EPOCHS = 10


def made_up(dataset: str, weight_decay: float, epochs: int = EPOCHS) -> list[float]:
    """A sigmoid response in ln λ (50% at λ = 1e-3), reached by a rise that slows over epochs."""
    final = 1.0 / (1.0 + math.exp(-1.4 * (math.log(weight_decay) - math.log(1e-3))))
    return [final * (1 - 0.6**k) / (1 - 0.6**epochs) for k in range(1, epochs + 1)]


def test_a_sequential_search_lands_with_full_length_trials() -> None:
    r = replay("ours-seq", "digits", 0.9, made_up, epochs=EPOCHS)
    assert r.landed and 1 <= len(r.steps) <= 12
    assert abs(r.steps[-1].sparsity - 0.9) <= 0.005
    assert all(s.epochs == EPOCHS and s.band_stop is None for s in r.steps)
    assert r.epochs == EPOCHS * len(r.steps)
    assert [s.sparsity for s in r.steps] == [made_up("", s.weight_decay)[-1] for s in r.steps]


def test_early_stopping_cuts_misses_short_and_runs_the_landing_trial_in_full() -> None:
    full = replay("ours-seq", "digits", 0.95, made_up, epochs=EPOCHS)
    early = replay("ours-seq-es", "digits", 0.95, made_up, epochs=EPOCHS)
    assert full.landed and early.landed
    stopped = [s for s in early.steps if s.band_stop is not None]
    assert stopped and all(s.epochs < EPOCHS for s in stopped)
    for s in stopped:  # stopped on the side its full run would have ended on
        final = made_up("", s.weight_decay)[-1]
        assert (final > 0.955) if s.band_stop == "above" else (final < 0.945)
    assert early.steps[-1].band_stop is None and early.steps[-1].epochs == EPOCHS
    assert early.epochs < EPOCHS * len(early.steps)


def test_a_wider_fall_margin_stops_no_trial_above_the_band() -> None:
    shipped = replay("ours-seq-es", "digits", 0.95, made_up, epochs=EPOCHS)
    assert any(s.band_stop == "above" for s in shipped.steps)
    wide = replace(DEFAULT_MARGINS, fall_margin=1.0)
    r = replay("ours-seq-es", "digits", 0.95, made_up, epochs=EPOCHS, margins=wide)
    assert r.landed and all(s.band_stop != "above" for s in r.steps)


def test_bisection_starts_in_the_middle_of_the_window_and_lands() -> None:
    r = replay("bisection", "mnist1d", 0.8, made_up, epochs=EPOCHS)
    assert r.steps[0].weight_decay == pytest.approx(math.sqrt(1e-4 * 1e-1), rel=1e-3)
    assert r.landed and r.epochs == EPOCHS * len(r.steps)


def test_a_simulated_parallel_search_cuts_the_others_when_one_lands() -> None:
    r = simulate("ours", "mnist1d", 0.95, made_up, epochs=EPOCHS, seed=0)
    assert r.landed and r.seed == 0
    landing = [s for s in r.steps if not s.cut and abs(s.sparsity - 0.95) <= 0.005]
    assert len(landing) == 1 and landing[0].epochs == EPOCHS
    cut = [s for s in r.steps if s.cut]
    assert len(cut) <= SLOTS - 1 and all(0 <= s.epochs <= EPOCHS for s in cut)
    assert len({s.weight_decay for s in r.steps}) == len(r.steps)  # never two trials at one λ
    # the first round runs two trials at once: both are proposed before either reports
    spec = bench_spec("mnist1d", 0.95, epochs=EPOCHS, budget=12, parallel=SLOTS)
    searcher = make_searcher("ours", spec)
    proposed = [searcher.suggest(f"t{i}") for i in range(SLOTS)]
    first_round = sorted(float(p["weight_decay"]) for p in proposed if isinstance(p, dict))
    assert sorted(s.weight_decay for s in r.steps[:2]) == first_round
    # one trial at a time, the first trial leans further towards the target (_bracket)
    sequential = replay("ours-seq", "mnist1d", 0.95, made_up, epochs=EPOCHS)
    assert sequential.steps[0].weight_decay > float(proposed[0]["weight_decay"])  # type: ignore[index]
    assert simulate("ours", "mnist1d", 0.95, made_up, epochs=EPOCHS, seed=0) == r  # seeded


def test_the_simulation_order_depends_on_the_seed_and_early_stops_still_apply() -> None:
    runs = [simulate("ours-es", "digits", 0.9, made_up, epochs=EPOCHS, seed=k) for k in range(6)]
    assert all(r.landed for r in runs)
    assert any(s.band_stop is not None for r in runs for s in r.steps)
    assert len({tuple(s.weight_decay for s in r.steps) for r in runs}) > 1


def test_the_cache_trains_each_lambda_once_and_keeps_it(tmp_path: Path) -> None:
    calls: list[tuple[str, float, int]] = []

    def train(dataset: str, weight_decay: float, epochs: int) -> list[float]:
        calls.append((dataset, weight_decay, epochs))
        return made_up(dataset, weight_decay, epochs)

    path = tmp_path / "cache.json"
    cache = TrajectoryCache(path, EPOCHS, train)
    first = replay("ours-seq", "digits", 0.9, cache, epochs=EPOCHS)
    assert cache.trained == len(calls) == len({c[1] for c in calls}) <= len(first.steps)
    again = TrajectoryCache(path, EPOCHS, train)  # read back from the file
    assert replay("ours-seq", "digits", 0.9, again, epochs=EPOCHS) == first
    assert again.trained == 0
    TrajectoryCache(path, 4, train)("digits", first.steps[0].weight_decay)  # other epochs: new
    assert calls[-1] == ("digits", first.steps[0].weight_decay, 4)


def test_a_real_trial_records_its_sparsity_after_every_epoch() -> None:
    sparsities = train_trajectory("digits", 5e-3, 2)
    assert len(sparsities) == 2 and all(0.0 < s < 1.0 for s in sparsities)
    assert sparsities == train_trajectory("digits", 5e-3, 2), "training is deterministic"
    before = torch.get_num_threads()
    two = train_trajectory("digits", 5e-3, 2, threads=2)
    assert torch.get_num_threads() == before, "the caller's thread count is restored"
    assert two == pytest.approx(sparsities, abs=0.01)  # other rounding, the same training


def test_main_prints_the_tables_from_a_filled_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cache.json"
    filled = TrajectoryCache(path, EPOCHS, made_up)
    for method in ("ours-seq", "bisection"):
        replay(method, "digits", 0.9, filled, epochs=EPOCHS)
    for seed in range(3):
        simulate("ours", "digits", 0.9, filled, epochs=EPOCHS, seed=seed)
    out = tmp_path / "replays.json"
    args = ["--datasets", "digits", "--targets", "0.9", "--methods", "ours-seq", "bisection"]
    assert main([*args, "--cache", str(path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| digits | 0.9 | ours-seq | yes |" in printed
    assert "| bisection | 1/1 |" in printed and "0 trainings added" in printed
    assert [r["method"] for r in json.loads(out.read_text())] == ["ours-seq", "bisection"]

    args = ["--datasets", "digits", "--targets", "0.9", "--methods", "ours", "--seeds", "3"]
    assert main([*args, "--cache", str(path), "--json", str(out)]) == 0
    assert [r["seed"] for r in json.loads(out.read_text())] == [0, 1, 2]
    printed = capsys.readouterr().out
    assert "| ours | 3/3 |" in printed and "0 trainings added" in printed
