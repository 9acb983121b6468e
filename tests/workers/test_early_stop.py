"""The band-stop rule: decisions on hand-made trajectories and a replay over measured ones."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from workers.early_stop import DEFAULT_MARGINS, BandStopRule, Margins

FIXTURE = Path(__file__).parents[1] / "data" / "early_stop_trajectories.json"

# simple margins for exact hand-made cases: rise ≤ 0.1 from 20%, ≤ 0.02 from 50%, never falls
PLAIN = Margins(
    rise=((0.2, 0.1), (0.5, 0.02)),
    fall=((0.2, 0.0),),
    safety_factor=1.0,
    rise_margin=0.0,
    fall_margin=0.0,
    min_fraction=0.2,
    min_epochs=10,
)


def test_fires_above_when_far_above_late() -> None:
    rule = BandStopRule(0.8, 0.005, 30)
    assert rule.decide(20, 0.95) == "above"
    assert rule.decide(20, 0.81) is None  # the default fall margin keeps it going


def test_above_with_plain_margins_needs_the_band_exceeded() -> None:
    rule = BandStopRule(0.8, 0.005, 30, PLAIN)
    assert rule.decide(6, 0.806) == "above"
    assert rule.decide(6, 0.805) is None


def test_below_only_when_even_the_envelope_cannot_reach() -> None:
    rule = BandStopRule(0.9, 0.005, 30, PLAIN)
    assert rule.decide(6, 0.79) == "below"  # f = 0.2: 0.79 + 0.1 < 0.895
    assert rule.decide(6, 0.80) is None  # 0.80 + 0.1 could still land
    assert rule.decide(15, 0.87) == "below"  # f = 0.5: 0.87 + 0.02 < 0.895
    assert rule.decide(15, 0.88) is None


def test_not_before_the_minimum_fraction() -> None:
    rule = BandStopRule(0.9, 0.005, 30, PLAIN)
    assert rule.decide(5, 0.0) is None  # f = 1/6 < 0.2
    assert rule.decide(5, 1.0) is None
    assert rule.decide(6, 0.0) == "below"


def test_never_on_the_last_epoch_nor_in_short_runs() -> None:
    assert BandStopRule(0.9, 0.005, 30, PLAIN).decide(30, 0.1) is None
    assert BandStopRule(0.9, 0.005, 9, PLAIN).decide(5, 0.1) is None
    assert BandStopRule(0.9, 0.005, 10, PLAIN).decide(5, 0.1) == "below"


def test_non_finite_sparsity_is_no_decision() -> None:
    assert BandStopRule(0.9, 0.005, 30).decide(20, float("nan")) is None


@pytest.mark.parametrize("epochs", [10, 20, 30, 100])
def test_never_fires_within_the_band(epochs: int) -> None:
    for target in (0.3, 0.5, 0.75, 0.9, 0.98):
        rule = BandStopRule(target, 0.005, epochs)
        for epoch in range(1, epochs + 1):
            for offset in (-0.005, -0.002, 0.0, 0.003, 0.005):
                assert rule.decide(epoch, target + offset) is None


def test_default_envelopes_are_conservative_shapes() -> None:
    fractions = [i / 100 for i in range(20, 100)]
    rises = [r for r in map(DEFAULT_MARGINS.max_rise, fractions) if r is not None]
    falls = [d for d in map(DEFAULT_MARGINS.max_fall, fractions) if d is not None]
    assert len(rises) == len(falls) == len(fractions)
    assert all(r > 0 for r in rises) and all(d > 0 for d in falls)
    assert all(a >= b for a, b in itertools.pairwise(rises))  # never increases with f
    assert DEFAULT_MARGINS.max_rise(0.1) is None


@pytest.mark.parametrize(
    ("target", "tolerance", "epochs", "message"),
    [(0.5, -0.1, 10, "bad band"), (0.999, 0.01, 10, "not inside"), (0.5, 0.01, 0, "epochs")],
)
def test_bad_arguments_are_refused(
    target: float, tolerance: float, epochs: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BandStopRule(target, tolerance, epochs)


def _replay(trajectory: list[float], target: float, tolerance: float) -> tuple[int, str] | None:
    rule = BandStopRule(target, tolerance, len(trajectory))
    for epoch, sparsity in enumerate(trajectory, start=1):
        decision = rule.decide(epoch, sparsity)
        if decision is not None:
            return epoch, decision
    return None


def test_replay_over_measured_trajectories_never_stops_a_landing_trial() -> None:
    runs = json.loads(FIXTURE.read_text())["runs"]
    assert len(runs) >= 10
    tolerance = 0.005
    landed = saved = missed = 0
    for run in runs:
        trajectory = run["trajectory"]
        final = trajectory[-1]
        for target in [0.5 + 0.01 * i for i in range(49)]:
            stop = _replay(trajectory, target, tolerance)
            lands = abs(final - target) <= tolerance
            landed += lands
            if lands:
                assert stop is None, (run["key"], target, stop)
                continue
            missed += len(trajectory)
            if stop is not None:
                epoch, side = stop
                assert side == ("above" if final > target else "below"), (run["key"], target)
                saved += len(trajectory) - epoch
    assert landed > 0
    assert saved > 0.2 * missed  # the rule does save epochs on these runs


def test_estimate_of_a_stopped_trial_is_on_its_side_and_nearer_the_final() -> None:
    runs = json.loads(FIXTURE.read_text())["runs"]
    raw_error = estimate_error = 0.0
    stops = 0
    for run in runs:
        trajectory = run["trajectory"]
        final = trajectory[-1]
        for target in [0.5 + 0.01 * i for i in range(49)]:
            stop = _replay(trajectory, target, 0.005)
            if stop is None:
                continue
            epoch, side = stop
            estimate = BandStopRule(target, 0.005, len(trajectory)).estimate(
                epoch, trajectory[epoch - 1]
            )
            assert (estimate > target + 0.005) if side == "above" else (estimate < target - 0.005)
            raw_error += abs(trajectory[epoch - 1] - final)
            estimate_error += abs(estimate - final)
            stops += 1
    assert stops > 100
    assert estimate_error < raw_error


def test_reporter_marks_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    from ray import tune

    from workers.trainable import TuneReporter

    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(tune, "report", lambda r, checkpoint: reports.append(r))
    context = SimpleNamespace(get_node_id=lambda: "node")
    monkeypatch.setattr(ray, "get_runtime_context", lambda: context)
    monkeypatch.setattr(tune.Checkpoint, "from_directory", lambda path: None)

    class FakeMetrics:
        def __init__(self, epoch: int, sparsity: float) -> None:
            self.epoch = epoch
            self.sparsity = sparsity

        def flat(self) -> dict[str, float]:
            return {"sparsity": self.sparsity}

    class FakeTrainer:
        stopped = False
        world_size = 1

        def request_stop(self) -> None:
            self.stopped = True

    reporter = TuneReporter(Path("."), {}, BandStopRule(0.5, 0.005, 30))
    trainer = FakeTrainer()
    reporter.on_epoch_end(trainer, FakeMetrics(20, 0.51))  # type: ignore[arg-type]
    assert "band_stop" not in reports[-1] and not trainer.stopped
    reporter.on_epoch_end(trainer, FakeMetrics(21, 0.9))  # type: ignore[arg-type]
    assert reports[-1]["band_stop"] == "above" and trainer.stopped
    assert reports[-1]["sparsity_estimate"] == BandStopRule(0.5, 0.005, 30).estimate(21, 0.9)


def test_summary_of_a_band_stopped_trial() -> None:
    from workers.result import TrialSummary

    metrics = {"sparsity": 0.97, "epoch": 7, "band_stop": "above"}
    config = {"weight_decay": 0.05, "s_init": -5.0}
    summary = TrialSummary.from_metrics("t", config, metrics, target=0.9, tolerance=0.005)
    assert (summary.status, summary.band_stop, summary.epochs) == ("above", "above", 7)
    plain = TrialSummary.from_metrics(
        "t", config, {"sparsity": 0.9, "epoch": 30}, target=0.9, tolerance=0.005
    )
    assert (plain.status, plain.band_stop, plain.epochs) == ("landed", None, 30)
