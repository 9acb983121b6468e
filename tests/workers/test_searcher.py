"""SparsitySearcher and its lane maths, driven directly with synthetic STR responses (no Ray).

The synthetic response is the shape measured on digits and MNIST-1D (DESIGN.md §3b): final
sparsity = s0 + (1 − s0)·sigmoid(a·(ln λ − ln λ50)), plus a small deterministic wobble.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher

from strsearch.spec import SearchSpec
from workers import _bracket
from workers.search import build_searcher
from workers.searcher import SparsitySearcher

Response = Callable[[float], float]
"""λ -> final sparsity."""


def sigmoid_response(s0: float, a: float, lam50: float, wobble: float = 0.002) -> Response:
    """``s0 + (1 − s0)·sigmoid(a (ln λ − ln λ50))`` plus ``wobble·sin(37 ln λ)``."""

    def response(lam: float) -> float:
        x = math.log(lam)
        s = s0 + (1 - s0) / (1 + math.exp(-a * (x - math.log(lam50))))
        return min(1.0, max(0.0, s + wobble * math.sin(37.0 * x)))

    return response


# Fitted to the λ sweeps: digits 40% at λ=0, 52% at 1e-3, 82% at 5e-3, 89% at 1e-2, 96% at 3e-2;
# MNIST-1D 54% at 1e-3, 85% at 5e-3, 94% at 1e-2, 99% at 2e-2.
DIGITS = sigmoid_response(0.40, 1.2, 2.8e-3)
MNIST1D = sigmoid_response(0.40, 1.45, 2.2e-3)


# Measured final sparsities of 10-epoch digits_cnn trials (seed 0, s_init −5) at the λ the searcher
# tried in real searches: the rise steepens into a collapse (sparsity 1) just past 98%.
DIGITS_10_EPOCHS = {
    0.003162: 0.505,
    0.008913: 0.7557,
    0.01982: 0.8766,
    0.02593: 0.8979,
    0.03162: 0.9164,
    0.03891: 0.9314,
    0.04216: 0.937,
    0.04732: 0.9459,
    0.05278: 0.9569,
    0.05938: 0.9687,
    0.06176: 0.9735,
    0.06484: 0.984,
    0.08913: 1.0,
}


def measured_response(points: dict[float, float]) -> Response:
    """Piecewise linear in ``(ln λ, sparsity)`` through measured points, 1 past the last one."""
    xs = sorted(points)

    def response(lam: float) -> float:
        if lam <= xs[0]:
            return max(0.0, points[xs[0]] - 0.2 * math.log(xs[0] / lam))
        if lam >= xs[-1]:
            return points[xs[-1]]
        right = next(i for i, x in enumerate(xs) if x >= lam)
        x0, x1 = xs[right - 1], xs[right]
        t = math.log(lam / x0) / math.log(x1 / x0)
        return points[x0] + t * (points[x1] - points[x0])

    return response


FIRST_AT_90 = 0.009487
"""The first λ suggested for a 90% target in the default window (see the first-suggestion test)."""


def result(sparsity: float | None, accuracy: float | None = 0.97, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"training_iteration": 30, **extra}
    if sparsity is not None:
        out["sparsity"] = sparsity
    if accuracy is not None:
        out["val_acc"] = accuracy
    return out


def run_sequential(
    searcher: Searcher,
    responses: dict[float, Response],
    accuracy: Callable[[float, float], float] = lambda lam, s_init: 0.97,
    limit: int = 60,
) -> list[dict[str, Any]]:
    """Suggest and complete one trial at a time until FINISHED; returns the configs."""
    configs: list[dict[str, Any]] = []
    for n in range(limit):
        config: object = searcher.suggest(f"t{n}")
        if config == Searcher.FINISHED:
            return configs
        assert isinstance(config, dict), "a sequential search always has something to try"
        configs.append(config)
        lam, s_init = config["weight_decay"], config["s_init"]
        sparsity = responses[s_init](lam)
        searcher.on_trial_complete(f"t{n}", result(sparsity, accuracy(lam, s_init)))
    raise AssertionError(f"no FINISHED after {limit} trials")


def run_parallel(
    searcher: Searcher, response: Response, slots: int, limit: int = 60
) -> list[tuple[str, dict[str, Any]]]:
    """Keep up to ``slots`` trials running, finishing the oldest first, until FINISHED."""
    running: list[tuple[str, dict[str, Any]]] = []
    suggested: list[tuple[str, dict[str, Any]]] = []
    n = 0
    while n < limit:
        answer: object = None
        while len(running) < slots:
            answer = searcher.suggest(f"p{n}")
            if not isinstance(answer, dict):
                break
            running.append((f"p{n}", answer))
            suggested.append((f"p{n}", answer))
            n += 1
            answer = None
        if answer == Searcher.FINISHED:
            return suggested
        assert running, "None with nothing running would stall Tune"
        trial_id, config = running.pop(0)
        searcher.on_trial_complete(trial_id, result(response(config["weight_decay"])))
    raise AssertionError(f"no FINISHED after {limit} trials")


def bisection_trials(response: Response, target: float, tolerance: float = 0.005) -> int:
    """Trials plain bisection on ln λ over (1e-4, 1e-1) needs to land (for comparison)."""
    lo, hi = math.log(1e-4), math.log(1e-1)
    for n in range(1, 40):
        x = (lo + hi) / 2
        s = response(math.exp(x))
        if abs(s - target) <= tolerance:
            return n
        lo, hi = (x, hi) if s < target else (lo, x)
    raise AssertionError("bisection did not land")


# ------------------------------------------------------------------------------ lane maths


def test_band_sides_and_validation() -> None:
    band = _bracket.Band(0.9, 0.005)
    assert [band.side(s) for s in (0.894, 0.895, 0.9, 0.905, 0.906)] == [-1, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="tolerance"):
        _bracket.Band(0.998, 0.005)
    with pytest.raises(ValueError, match="tolerance"):
        _bracket.Band(0.5, 0.0)


def test_bracket_ignores_a_below_result_past_the_upper_end() -> None:
    obs = [
        _bracket.Observation(-6.0, _bracket.BELOW, 0.7),
        _bracket.Observation(-4.0, _bracket.ABOVE, 0.95),
        _bracket.Observation(-3.5, _bracket.BELOW, 0.89),  # noise: contradicts monotonicity
    ]
    assert _bracket.bracket(obs) == (-6.0, -4.0)


def test_interpolation_is_exact_on_a_logit_linear_response() -> None:
    band = _bracket.Band(0.9, 0.005)
    limits = _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 10.0)

    def logit_linear(x: float) -> float:  # logit(s) = 1.3 (x + 5)
        return 1 / (1 + math.exp(-1.3 * (x + 5.0)))

    obs = [_bracket.Observation(x, band.side(logit_linear(x)), logit_linear(x)) for x in (-6, -2)]
    decision = _bracket.decide(obs, [], [], band, limits)
    assert decision.kind == "propose"
    assert decision.x is not None
    # exact but for the slight pull of the prior slope
    assert decision.x == pytest.approx(_bracket.logit(0.9) / 1.3 - 5.0, abs=1e-3)


def test_one_result_is_extrapolated_with_the_prior_slope() -> None:
    band = _bracket.Band(0.9, 0.005)
    limits = _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 10.0)
    obs = [_bracket.Observation(-5.75, _bracket.BELOW, 0.7)]
    decision = _bracket.decide(obs, [], [], band, limits)
    expected = -5.75 + (_bracket.logit(0.9) - _bracket.logit(0.7)) / _bracket.PRIOR_SLOPE
    assert decision.x == pytest.approx(expected)


def test_two_moves_of_the_same_end_widen_the_margin() -> None:
    band = _bracket.Band(0.9, 0.005)
    limits = _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 10.0)
    obs = [
        _bracket.Observation(-6.0, _bracket.BELOW, 0.5),
        _bracket.Observation(-2.0, _bracket.ABOVE, 0.999),
        _bracket.Observation(-5.5, _bracket.BELOW, 0.8),
    ]
    assert not _bracket._stalled(obs)
    obs.append(_bracket.Observation(-5.2, _bracket.BELOW, 0.88))  # the secant fell short twice
    assert _bracket._stalled(obs)
    decision = _bracket.decide(obs, [], [], band, limits)
    assert decision.x is not None
    assert _bracket.STALL_MARGIN > _bracket.MARGIN
    assert decision.x >= -5.2 + _bracket.STALL_MARGIN * 3.2 - 1e-9


def test_a_saturated_end_is_bisected_not_interpolated() -> None:
    band = _bracket.Band(0.98, 0.005)
    limits = _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 10.0)
    below = _bracket.Observation(-3.45, _bracket.BELOW, 0.9164)
    collapsed = _bracket.Observation(-2.42, _bracket.ABOVE, 1.0)
    decision = _bracket.decide([below, collapsed], [], [], band, limits)
    assert decision.x == pytest.approx((-3.45 - 2.42) / 2)
    # the same bracket with a valued upper end is interpolated, not bisected
    steep = _bracket.Observation(-2.42, _bracket.ABOVE, 0.99)
    interpolated = _bracket.decide([below, steep], [], [], band, limits)
    assert interpolated.x is not None and interpolated.x > (-3.45 - 2.42) / 2 + 0.1


def test_a_concurrent_one_sided_proposal_hedges_between_edge_and_estimate() -> None:
    band = _bracket.Band(0.98, 0.005)
    limits = _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 10.0)
    obs = [
        _bracket.Observation(math.log(lam), _bracket.BELOW, s)
        for lam, s in ((0.003162, 0.505), (0.008913, 0.7557), (0.03162, 0.9164))
    ]
    estimate = _bracket.decide(obs, [], [], band, limits).x
    assert estimate is not None and estimate > math.log(0.03162)
    second = _bracket.decide(obs, [estimate], [], band, limits).x
    assert second is not None and math.log(0.03162) < second < estimate


def test_a_pending_trial_caps_a_one_sided_proposal() -> None:
    band = _bracket.Band(0.9, 0.005)
    limits = _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 10.0)
    stopped_above = [_bracket.Observation(math.log(0.03), _bracket.ABOVE)]  # a bare bound
    alone = _bracket.decide(stopped_above, [], [], band, limits).x
    assert alone == pytest.approx(math.log(0.015)), "no value above: a factor 2 down"
    below = [_bracket.Observation(math.log(0.003), _bracket.BELOW)]
    up = _bracket.decide(below, [], [], band, limits).x
    assert up == pytest.approx(math.log(0.03)), "no value below: a full expansion step up"
    pending = math.log(0.01)
    capped = _bracket.decide(stopped_above, [pending], [], band, limits).x
    assert capped is not None and pending < capped < math.log(0.03)


@pytest.mark.parametrize("slots", [1, 2])
@pytest.mark.parametrize("target", [0.9, 0.95, 0.97, 0.98])
def test_lands_next_to_the_collapse_measured_on_digits(slots: int, target: float) -> None:
    searcher = SparsitySearcher(target=target, max_trials=12)
    run_parallel(searcher, measured_response(DIGITS_10_EPOCHS), slots)
    best = searcher.best()
    assert best is not None, f"nothing landed in {searcher.num_trials} trials"
    assert searcher.num_trials <= 9


def test_a_response_that_jumps_over_the_band_exhausts_the_lane() -> None:
    band = _bracket.Band(0.9, 0.005)
    limits = _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 10.0)
    obs: list[_bracket.Observation] = []
    for _ in range(40):
        decision = _bracket.decide(obs, [], [], band, limits)
        if decision.kind != "propose":
            break
        assert decision.x is not None
        s = 0.85 if decision.x < math.log(0.01) else 0.95  # a step at λ = 0.01
        obs.append(_bracket.Observation(decision.x, band.side(s), s))
    assert decision.kind == "exhausted"
    assert "jumps over the band" in decision.reason
    lo, hi = _bracket.bracket(obs)
    assert lo is not None and hi is not None
    assert lo < math.log(0.01) <= hi
    assert hi - lo < _bracket.MIN_WIDTH


def test_limits_validation() -> None:
    with pytest.raises(ValueError, match="lambda_floor"):
        _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-3, 10.0, 10.0)
    with pytest.raises(ValueError, match="expand_factor"):
        _bracket.Limits.from_lambdas((1e-4, 1e-1), 1e-7, 10.0, 1.0)


# --------------------------------------------------------------------------- the searcher


@pytest.mark.parametrize("target", [0.5, 0.9, 0.1])
def test_first_suggestion_leans_from_the_middle_towards_the_target(target: float) -> None:
    searcher = SparsitySearcher(target=target, s_inits=[-3.0])
    first = searcher.suggest("a")
    assert isinstance(first, dict) and first["s_init"] == -3.0
    middle = math.sqrt(1e-4 * 1e-1)
    lean = _bracket.START_PULL * _bracket.logit(target) / _bracket.PRIOR_SLOPE
    assert first["weight_decay"] == pytest.approx(middle * math.exp(lean), rel=1e-3)


def test_one_trial_at_a_time_the_first_trial_leans_further_towards_the_target() -> None:
    firsts = {}
    for parallel in (1, 2):
        spec = SearchSpec.parse(
            {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9,
             "search": {"parallel_trials": parallel}}
        )  # fmt: skip
        first = build_searcher(spec).suggest("a")
        assert isinstance(first, dict)
        firsts[parallel] = first["weight_decay"]
    middle = math.sqrt(1e-4 * 1e-1)
    for parallel, pull in ((1, _bracket.ONE_AT_A_TIME_PULL), (2, _bracket.START_PULL)):
        lean = pull * _bracket.logit(0.9) / _bracket.PRIOR_SLOPE
        assert firsts[parallel] == pytest.approx(middle * math.exp(lean), rel=1e-3)
    assert firsts[1] > firsts[2]


def test_a_collapsed_first_trial_sends_the_next_one_a_factor_two_down() -> None:
    searcher = SparsitySearcher(target=0.98)
    first = searcher.suggest("a")
    assert isinstance(first, dict)
    searcher.on_trial_complete("a", result(1.0))  # every weight pruned: no usable logit
    second = searcher.suggest("b")
    assert isinstance(second, dict)
    assert second["weight_decay"] == pytest.approx(first["weight_decay"] / 2, rel=1e-3)
    # an early-stopped bound above the band without an estimate says as little
    searcher.on_trial_complete("b", result(0.999, band_stop="above"))
    third = searcher.suggest("c")
    assert isinstance(third, dict)
    assert third["weight_decay"] == pytest.approx(second["weight_decay"] / 2, rel=1e-3)


def test_a_state_saved_before_start_pull_existed_restores_with_the_old_pull() -> None:
    saved = SparsitySearcher(target=0.9).state_dict()
    del saved["config"]["start_pull"]
    restored = SparsitySearcher(target=0.9, start_pull=_bracket.ONE_AT_A_TIME_PULL)
    restored.load_state_dict(saved)
    assert restored.suggest("a") == {"weight_decay": FIRST_AT_90, "s_init": -5.0}


@pytest.mark.parametrize(
    ("name", "response", "budget"), [("digits", DIGITS, 5), ("mnist1d", MNIST1D, 5)]
)
@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.98])
def test_sequential_search_lands_in_a_few_trials(
    name: str, response: Response, budget: int, target: float
) -> None:
    searcher = SparsitySearcher(target=target)
    configs = run_sequential(searcher, {-5.0: response})
    landed = searcher.landed()
    assert len(landed) == 1
    assert abs(landed[0].sparsity - target) <= 0.005
    assert landed[0].trial_id == f"t{len(configs) - 1}", "stops at the first landed trial"
    assert len(configs) <= budget, f"{name} T={target}: {len(configs)} trials"
    assert [state.status for state in searcher.lanes()] == ["landed"]


def test_fewer_trials_than_bisection_over_many_targets() -> None:
    ours = bisect = 0
    for response in (DIGITS, MNIST1D):
        for i in range(20):
            target = 0.6 + 0.38 * i / 19
            ours += len(run_sequential(SparsitySearcher(target=target), {-5.0: response}))
            bisect += bisection_trials(response, target)
    assert ours < 0.6 * bisect, (ours, bisect)


def test_expands_upwards_when_the_target_lies_above_the_range() -> None:
    late = sigmoid_response(0.30, 1.2, 0.5)  # the band for 0.9 sits at λ ≈ 4
    searcher = SparsitySearcher(target=0.9, lambda_range=(1e-4, 1e-2))
    configs = run_sequential(searcher, {-5.0: late})
    lambdas = [c["weight_decay"] for c in configs]
    assert searcher.best() is not None
    assert max(lambdas) > 1e-2
    first_not_below = next(i for i, lam in enumerate(lambdas) if late(lam) >= 0.895)
    steps = [b / a for a, b in itertools.pairwise(lambdas[: first_not_below + 1])]
    assert all(1.0 < r <= 10.0 * 1.001 for r in steps), steps


def test_expands_downwards_when_the_target_lies_below_the_range() -> None:
    early = sigmoid_response(0.30, 1.2, 1e-6)
    searcher = SparsitySearcher(target=0.6, lambda_range=(1e-3, 1e-1))
    configs = run_sequential(searcher, {-5.0: early})
    lambdas = [c["weight_decay"] for c in configs]
    assert searcher.best() is not None
    assert min(lambdas) < 1e-5
    first_not_above = next(i for i, lam in enumerate(lambdas) if early(lam) <= 0.605)
    steps = [a / b for a, b in itertools.pairwise(lambdas[: first_not_above + 1])]
    assert all(1.0 < r <= 10.0 * 1.001 for r in steps), steps


def test_unreachable_low_target_exhausts_at_the_floor_and_reports_the_closest() -> None:
    searcher = SparsitySearcher(target=0.2, lambda_floor=1e-6)  # digits never goes under 40%
    configs = run_sequential(searcher, {-5.0: DIGITS})
    assert min(c["weight_decay"] for c in configs) == pytest.approx(1e-6)
    (lane,) = searcher.lanes()
    assert lane.status == "exhausted"
    assert "floor" in lane.reason
    assert searcher.landed() == []
    assert searcher.best() is None
    closest = searcher.closest()
    assert closest is not None
    assert closest.sparsity == min(DIGITS(c["weight_decay"]) for c in configs)
    assert searcher.is_finished()


def test_unreachable_high_target_exhausts_at_the_ceiling() -> None:
    searcher = SparsitySearcher(target=0.99, lambda_range=(1e-4, 1e-2), lambda_ceiling=0.02)
    run_sequential(searcher, {-5.0: DIGITS})
    (lane,) = searcher.lanes()
    assert lane.status == "exhausted"
    assert "ceiling" in lane.reason
    assert lane.lambda_lo == pytest.approx(0.02)


def test_parallel_suggestions_are_distinct_and_avoid_pending_trials() -> None:
    searcher = SparsitySearcher(target=0.8)
    first = [searcher.suggest(f"a{i}") for i in range(3)]
    lambdas = [c["weight_decay"] for c in first if isinstance(c, dict)]
    assert len(set(lambdas)) == 3
    assert all(1e-4 <= lam <= 1e-1 for lam in lambdas)
    for i, lam in enumerate(lambdas):
        searcher.on_trial_complete(f"a{i}", result(DIGITS(lam)))
    (lane,) = searcher.lanes()
    assert lane.lambda_lo is not None and lane.lambda_hi is not None
    pending = searcher.suggest("b0")
    assert isinstance(pending, dict)
    more = [searcher.suggest(f"b{i}") for i in (1, 2, 3)]
    batch = [pending["weight_decay"]] + [c["weight_decay"] for c in more if isinstance(c, dict)]
    assert len(batch) == 4
    assert all(lane.lambda_lo < lam < lane.lambda_hi for lam in batch)
    ratios = [max(a, b) / min(a, b) for i, a in enumerate(batch) for b in batch[i + 1 :]]
    assert min(ratios) > 1.01, "no suggestion crowds a pending one"


def test_returns_none_when_nothing_useful_is_left_until_a_trial_finishes() -> None:
    searcher = SparsitySearcher(target=0.9)
    configs = [searcher.suggest(f"t{i}") for i in range(20)]
    assert all(isinstance(c, dict) for c in configs[:3])
    assert configs[-1] is None, "a crowded start waits instead of piling up trials"
    lambdas = [c["weight_decay"] for c in configs if isinstance(c, dict)]
    assert len(lambdas) == len(set(lambdas))


@pytest.mark.parametrize("slots", [2, 3, 4])
def test_parallel_search_lands(slots: int) -> None:
    searcher = SparsitySearcher(target=0.93)
    run_parallel(searcher, MNIST1D, slots)
    best = searcher.best()
    assert best is not None
    assert abs(best.sparsity - 0.93) <= 0.005
    assert searcher.num_trials <= 4 * slots


def test_lanes_are_served_round_robin_and_best_is_the_most_accurate() -> None:
    responses = {-5.0: DIGITS, -2.0: sigmoid_response(0.30, 1.2, 8e-3)}
    searcher = SparsitySearcher(target=0.9, s_inits=[-5.0, -2.0])

    def accuracy(lam: float, s_init: float) -> float:
        return 0.95 if s_init == -5.0 else 0.98

    configs = run_sequential(searcher, responses, accuracy)
    assert [c["s_init"] for c in configs[:4]] == [-5.0, -2.0, -5.0, -2.0]
    landed = searcher.landed()
    assert sorted(t.s_init for t in landed) == [-5.0, -2.0]
    best = searcher.best()
    assert best is not None
    assert best.s_init == -2.0
    assert best.accuracy == 0.98
    assert [lane.status for lane in searcher.lanes()] == ["landed", "landed"]


def test_best_breaks_accuracy_ties_by_closeness_to_target() -> None:
    searcher = SparsitySearcher(target=0.9, s_inits=[-5.0, -2.0])
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", result(0.904, 0.97))
    searcher.on_trial_complete("b", result(0.899, 0.97))
    best = searcher.best()
    assert best is not None
    assert best.trial_id == "b"


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ({"error": True}, "error"),
        ({"result": None}, "no result"),
        ({"result": result(None)}, "missing"),
        ({"result": result(float("nan"))}, "missing or not a finite"),
        ({"result": result(float("inf"))}, "missing or not a finite"),
        ({"result": result(90.0)}, "outside"),
        ({"result": {"sparsity": "0.9"}}, "missing"),
        ({"result": result(0.9, band_stop="sideways")}, "band_stop"),
    ],
)
def test_failed_trials_leave_the_bracket_alone(
    outcome: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.on_trial_complete("a", result(0.7))
    before = searcher.lanes()[0]
    config = searcher.suggest("b")
    assert isinstance(config, dict)
    with caplog.at_level(logging.WARNING, logger="workers.searcher"):
        searcher.on_trial_complete("b", **outcome)
    assert reason in caplog.text
    after = searcher.lanes()[0]
    assert (after.lambda_lo, after.lambda_hi) == (before.lambda_lo, before.lambda_hi)
    assert after.failed == 1
    assert searcher.landed() == []
    assert searcher.closest() is not None
    assert searcher.closest().trial_id == "a"  # type: ignore[union-attr]


def test_a_failed_lambda_is_retried_once_nearby_then_avoided() -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.on_trial_complete("a", result(0.7))
    first = searcher.suggest("b")
    assert isinstance(first, dict)
    searcher.on_trial_complete("b", error=True)
    retry = searcher.suggest("c")
    assert isinstance(retry, dict)
    ratio = retry["weight_decay"] / first["weight_decay"]
    assert ratio != 1.0
    assert abs(math.log(ratio)) < _bracket.FAIL_RADIUS
    searcher.on_trial_complete("c", error=True)
    third = searcher.suggest("d")
    assert isinstance(third, dict)
    for earlier in (first, retry):
        gap = abs(math.log(third["weight_decay"] / earlier["weight_decay"]))
        assert gap >= _bracket.FAIL_RADIUS


def test_a_lane_whose_trials_keep_failing_is_given_up() -> None:
    searcher = SparsitySearcher(target=0.9, max_failures=3)
    for trial_id in "abc":
        assert isinstance(searcher.suggest(trial_id), dict)
        searcher.on_trial_complete(trial_id, error=True)
    assert searcher.suggest("d") == Searcher.FINISHED
    (lane,) = searcher.lanes()
    assert lane.status == "exhausted"
    assert "failed" in lane.reason


def test_completion_twice_and_unknown_ids_are_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.on_trial_complete("a", result(0.7))
    state = searcher.state_dict()
    with caplog.at_level(logging.WARNING, logger="workers.searcher"):
        searcher.on_trial_complete("a", result(0.9))
        searcher.on_trial_complete("a", error=True)
        searcher.on_trial_complete("ghost", result(0.9))
        searcher.on_trial_result("ghost", result(0.9))
    assert searcher.state_dict() == state
    assert caplog.text.count("already completed") == 2
    assert "unknown trial ghost" in caplog.text
    assert searcher.suggest("a") is None, "a finished trial id gets no new config"


def test_a_pending_trial_id_gets_its_own_config_again() -> None:
    searcher = SparsitySearcher(target=0.9)
    first = searcher.suggest("a")
    assert searcher.suggest("a") == first
    assert searcher.num_trials == 1


def test_band_stop_results_are_bounds_not_fit_points() -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.on_trial_complete("a", result(0.7))
    b = searcher.suggest("b")
    assert isinstance(b, dict)
    searcher.on_trial_complete("b", result(0.6, band_stop="above"))  # a bound: 0.6 is no final
    (lane,) = searcher.lanes()
    assert lane.lambda_hi == b["weight_decay"]
    assert lane.failed == 0
    assert [t.trial_id for t in [searcher.closest()] if t] == ["a"]
    c = searcher.suggest("c")
    assert isinstance(c, dict)
    assert lane.lambda_lo is not None
    assert lane.lambda_lo < c["weight_decay"] < b["weight_decay"]


def test_a_band_stop_with_an_estimate_is_interpolated_through() -> None:
    searcher = SparsitySearcher(target=0.9)
    a = searcher.suggest("a")
    assert isinstance(a, dict)
    searcher.on_trial_complete("a", result(0.7))
    b = searcher.suggest("b")
    assert isinstance(b, dict)
    stopped = result(0.93, band_stop="above", sparsity_estimate=0.96)
    searcher.on_trial_complete("b", stopped)
    c = searcher.suggest("c")
    assert isinstance(c, dict)
    x_a, x_b = math.log(a["weight_decay"]), math.log(b["weight_decay"])
    y_a, y_b, y_t = (_bracket.logit(v) for v in (0.7, 0.96, 0.9))
    expected = x_a + (y_t - y_a) / (y_b - y_a) * (x_b - x_a)  # regula falsi through the estimate
    assert math.log(c["weight_decay"]) == pytest.approx(expected, abs=1e-3)
    # restored from its state, the searcher still knows the estimate
    twin = SparsitySearcher(target=0.9)
    twin.load_state_dict(json.loads(json.dumps(searcher.state_dict())))
    assert twin.suggest("d") == searcher.suggest("d")


def test_band_stop_from_the_latest_result_counts_when_completion_has_none() -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.on_trial_result("a", result(0.55, band_stop="below", training_iteration=8))
    assert searcher.latest_result("a") == {
        "sparsity": 0.55,
        "accuracy": 0.97,
        "band_stop": "below",
        "training_iteration": 8,
    }
    searcher.on_trial_complete("a")
    (lane,) = searcher.lanes()
    assert lane.lambda_lo == FIRST_AT_90
    assert lane.failed == 0
    assert searcher.closest() is None


def test_max_trials_finishes_the_search_even_with_trials_running() -> None:
    searcher = SparsitySearcher(target=0.9, max_trials=4)
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    assert all(isinstance(c, dict) for c in configs)
    for i, c in enumerate(configs):
        assert isinstance(c, dict)
        searcher.on_trial_complete(f"t{i}", result(0.5 if c["weight_decay"] < 3e-3 else 0.97))
    assert isinstance(searcher.suggest("t3"), dict)
    assert searcher.suggest("t4") == Searcher.FINISHED
    assert searcher.num_trials == 4
    assert searcher.is_finished()


def test_finished_after_landing_yet_late_results_are_still_recorded() -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", result(0.902, 0.95))
    assert searcher.suggest("c") == Searcher.FINISHED
    searcher.on_trial_complete("b", result(0.897, 0.96))
    assert [t.trial_id for t in searcher.landed()] == ["a", "b"]
    best = searcher.best()
    assert best is not None
    assert best.trial_id == "b"


def test_set_search_properties_accepts_anything() -> None:
    searcher = SparsitySearcher(target=0.9)
    assert searcher.set_search_properties("val_acc", "max", {"spec": {"model": "x"}}, extra=1)
    assert searcher.metric == "sparsity"
    assert searcher.suggest("a") == {"weight_decay": FIRST_AT_90, "s_init": -5.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": 1.0}, "tolerance"),
        ({"target": 0.9, "tolerance": -0.01}, "tolerance"),
        ({"target": 0.9, "s_inits": []}, "s_inits"),
        ({"target": 0.9, "s_inits": [-5.0, -5.0]}, "s_inits"),
        ({"target": 0.9, "s_inits": [float("nan")]}, "s_inits"),
        ({"target": 0.9, "max_trials": 0}, "max_trials"),
        ({"target": 0.9, "max_failures": 0}, "max_failures"),
        ({"target": 0.9, "lambda_range": (1e-2, 1e-3)}, "lambda_range"),
        ({"target": 0.9, "lambda_floor": 1e-3}, "lambda_floor"),
        ({"target": 0.9, "expand_factor": 0.5}, "expand_factor"),
        ({"target": 0.9, "start_pull": 1.5}, "start_pull"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SparsitySearcher(**kwargs)


def test_identical_calls_give_identical_suggestions() -> None:
    runs = []
    for _ in range(2):
        searcher = SparsitySearcher(target=0.95, s_inits=[-5.0, -1.0])
        runs.append(run_parallel(searcher, DIGITS, slots=3))
    assert runs[0] == runs[1]


def test_save_restore_mid_search_suggests_exactly_what_the_original_would(
    tmp_path: Path,
) -> None:
    original = SparsitySearcher(target=0.93, s_inits=[-5.0, -2.0])
    for i in range(3):
        original.suggest(f"t{i}")
    original.on_trial_result("t0", result(0.5, training_iteration=3))
    original.on_trial_complete("t1", result(0.8))
    original.on_trial_complete("t2", result(0.3, band_stop="below"))
    path = tmp_path / "searcher.json"
    original.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["searcher.json"], "no temporary file left"
    json.loads(path.read_text())  # plain JSON

    restored = SparsitySearcher(target=0.93, s_inits=[-5.0, -2.0])
    restored.restore(path)
    assert restored.state_dict() == original.state_dict()
    assert restored.latest_result("t0") == original.latest_result("t0")

    # Tune re-runs the pending trial under its old id; then both continue identically.
    for searcher in (original, restored):
        searcher.on_trial_complete("t0", result(0.86))
    tails = [run_parallel(s, DIGITS, slots=2) for s in (original, restored)]
    assert tails[0] == tails[1]
    assert original.state_dict() == restored.state_dict()
    assert original.best() == restored.best()
    assert original.best() is not None


def test_restore_uses_the_saved_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = SparsitySearcher(target=0.8)
    saved.suggest("a")
    saved.save(tmp_path / "s.json")
    other = SparsitySearcher(target=0.95)
    with caplog.at_level(logging.WARNING, logger="workers.searcher"):
        other.restore(tmp_path / "s.json")
    assert "another configuration" in caplog.text
    assert other.state_dict() == saved.state_dict()


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(version=99),
        lambda s: s.pop("trials"),
        lambda s: s["trials"][0].update(lane=7),
        lambda s: s["trials"][0].update(weight_decay=-1.0),
        lambda s: s["trials"][0].update(colour="red"),
        lambda s: s["completed"].append("nobody"),
        lambda s: s["completed"].clear(),
        lambda s: s["config"].update(colour="red"),
        lambda s: s["config"].update(target=2.0),
    ],
)
def test_malformed_state_is_refused(damage: Callable[[dict[str, Any]], object]) -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.on_trial_complete("a", result(0.7))
    state = json.loads(json.dumps(searcher.state_dict()))
    damage(state)
    with pytest.raises(ValueError, match="state"):
        SparsitySearcher(target=0.9).load_state_dict(state)


def test_tune_save_to_dir_and_restore_from_dir_round_trip(tmp_path: Path) -> None:
    searcher = SparsitySearcher(target=0.9)
    searcher.suggest("a")
    searcher.save_to_dir(str(tmp_path), session_str="s1")
    assert [p.name for p in tmp_path.iterdir()] == ["sparsity-searcher-state-s1.json"]
    restored = SparsitySearcher(target=0.9)
    restored.restore_from_dir(str(tmp_path))
    assert restored.state_dict() == searcher.state_dict()


@pytest.mark.parametrize("batch", [False, True])
def test_concurrency_limiter_wrapping(batch: bool) -> None:
    searcher = SparsitySearcher(target=0.9)
    limiter = ConcurrencyLimiter(searcher, max_concurrent=2, batch=batch)
    assert limiter.set_search_properties("sparsity", "max", {})
    a, b = limiter.suggest("a"), limiter.suggest("b")
    assert isinstance(a, dict) and isinstance(b, dict)
    assert limiter.suggest("c") is None, "the limiter holds the third slot"
    for trial_id in "ab":
        config = searcher.latest_result(trial_id)
        assert config == {}
    limiter.on_trial_complete("a", result(DIGITS(a["weight_decay"])))
    limiter.on_trial_complete("b", result(DIGITS(b["weight_decay"])))
    run_parallel(limiter, DIGITS, slots=3)
    best = searcher.best()
    assert best is not None
    assert abs(best.sparsity - 0.9) <= 0.005
