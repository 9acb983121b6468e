"""The maths of one search lane: bracket ln λ around a target sparsity band, then narrow it.

STR (Kusupati et al., ICML 2020, arXiv 2002.03231) has no knob for the final sparsity: it is an
outcome of the weight decay λ. For a fixed ``s_init`` and schedule it grows monotonically and
sigmoidally with ln λ, so ``logit(sparsity)`` is close to linear in ``x = ln λ`` near the targets
people ask for (80–99%). A lane inverts that response for one ``s_init``:

* with no result yet it starts between the middle of the user's λ range and where a prior
  response (50% sparsity in that middle) puts the target;
* while every result lies on one side of the band it extrapolates towards the band with a line
  fitted to the results nearest the target (a prior slope when there is one), at most one
  expansion step per trial (a factor 2 down from collapsed results), and gives up at the λ
  floor/ceiling;
* with a bracket (``x_lo`` below the band, ``x_hi`` above it) it interpolates on
  ``(x, logit(sparsity))`` through the bracket ends (regula falsi in logit space), kept in the
  inner part of the bracket so that it always shrinks, with a wider margin after two results
  moved the same end (the Illinois idea); an end without a usable value (an early-stopped
  bound, or a collapsed network at sparsity ≈ 1) makes it bisect instead;
* a bracket narrower than 1% with nothing landed gets two probes, then the lane gives up.

Concurrent trials (pending ``x``) are spread around the estimate, never on top of each other.
Everything here is plain deterministic arithmetic on floats; no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

BELOW = -1
"""Side of a result under the band (sparsity < target − tolerance)."""
INSIDE = 0
"""Side of a result within the band: the trial landed."""
ABOVE = 1
"""Side of a result over the band (sparsity > target + tolerance)."""

PRIOR_SLOPE = 1.0
"""d logit(sparsity) / d ln λ assumed when one result is all there is.

Measured slopes: digits 0.9–1.5, MNIST-1D 1.1–2.7. The low end makes a one-point extrapolation
step past the band (and bracket it) rather than creep towards it."""
PRIOR_WEIGHT = 0.003
"""Pull of the fitted slope towards :data:`PRIOR_SLOPE`, relative to the total weight: it only
matters when the results are within a few percent of each other in λ (or there is just one)."""
FIT_POINTS = 3
"""Finished results, nearest the target in logit, that an extrapolation is fitted to."""
FIT_SOFTENING = 0.1
"""Weight of a result in a fit: ``1 / (|logit s − logit target| + FIT_SOFTENING)²``."""
MARGIN = 0.15
"""Fraction of the bracket kept free at each end by an interpolated proposal."""
STALL_MARGIN = 0.3
"""The margin after the last two results moved the same end of the bracket (Illinois-style)."""
NEAR_BAND = 2.0
"""A bracket end within this many band widths (in logit) of the target may be approached to half
a band width instead of :data:`MARGIN`: the estimate next to it is trustworthy."""
MIN_WIDTH = math.log(1.01)
"""A bracket narrower than 1% in λ with no landed trial: the response jumps over the band
(after :data:`COLLAPSE_PROBES` probes)."""
COLLAPSE_PROBES = 2
"""Extra trials inside a bracket narrower than :data:`MIN_WIDTH` before giving up: with
seed-to-seed noise about as large as the tolerance, a nearby λ can still land."""
MIN_PROBE_WIDTH = math.log(1.004)
"""No probes in a bracket narrower than 0.4%: λ is suggested with 4 significant digits."""
SATURATION = 1e-3
"""A result this close to 0 or 1 (a collapsed network) bounds the bracket but is no interpolation
end: its logit says how few weights survived, not where the band is."""
COLLAPSE_STEP = math.log(2.0)
"""Largest step down from results that all lie above the band without a usable value (collapsed
networks at sparsity ≈ 1, or bounds without an estimate). STR's sparsity jumps from about 97% to
100% within a factor of 1.5 in λ, so the band of a high target lies just below a collapse, not a
full expansion step (10×) below it. Replayed (the :data:`ONE_AT_A_TIME_PULL` set-up): 917 epochs
on the 38 targets instead of 936 with the full step; MNIST-1D at 98%, whose first trial
collapses, 33 instead of 43 (57 → 13 through Ray, two threads per trial)."""
MIN_STEP = 0.02
"""Smallest move in ln λ past the last one-sided result (2%)."""
START_PULL = 0.5
"""The first proposal moves this fraction of the way from the middle of the λ window to where the
prior response puts the target, when several trials run at once. Going all the way overshoots
into collapsed (sparsity 1) trials for high targets; with 0.5 the measured 10-epoch responses of
digits and MNIST-1D land 7 targets (0.8–0.98) in 60 trials instead of 75 two at a time."""
ONE_AT_A_TIME_PULL = 0.75
""":data:`START_PULL` of a search that runs one trial at a time (the default). Replayed on the
recorded 10-epoch responses of digits and MNIST-1D, one trial at a time with early stopping, 38
targets from 0.80 to 0.98: 1090 epochs with 0.5, 999 with 0.6, 773 with 0.7, 936 with 0.75,
1069 with 0.8, 1085 with 1.0, against 2160 for plain bisection (docs/benchmarks.md). 0.75 sits
inside the range that beats 0.5 rather than on its luckiest value. With two at a time the second
first-round trial goes further still, into collapsed networks: 0.75 cost 470 epochs through Ray
on the four main targets, against 290 with 0.5."""
START_SPREAD = 0.15
"""Concurrent first proposals sit this fraction of the starting window apart."""
BISECT_SPREAD = 0.12
"""Concurrent proposals in a bracket without a usable fit sit this fraction of it apart."""
DISTANCE_SPREAD = 0.2
"""Concurrent proposals sit at least this fraction of the distance from the estimate to the
nearest finished result apart (an interpolation is only as good as its nearest data), and at
least one band width (in ln λ) apart."""
FAIL_RADIUS = 0.05
"""Failures within this distance in ln λ (5%) count as failures of the same λ."""
RETRY_SHIFT = 0.03
"""The one retry of a failed λ moves it by this much in ln λ (3%), towards the window middle."""

_CLIP = 1e-6
_EDGE = 1e-3  # λ proposals are rounded; within 0.1% of the floor/ceiling is at it
_N_SPREAD = 3  # proposals per call: centre, then ±1, ±2, ±3 spreads


def logit(p: float) -> float:
    """``ln(p / (1 − p))`` with ``p`` clipped to ``[1e-6, 1 − 1e-6]``."""
    p = min(max(p, _CLIP), 1.0 - _CLIP)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class Band:
    """The accepted sparsities ``[target − tolerance, target + tolerance]``.

    Raises:
        ValueError: unless ``0 < target − tolerance`` and ``target + tolerance < 1``.
    """

    target: float
    tolerance: float

    def __post_init__(self) -> None:
        if not (
            self.tolerance > 0
            and 0 < self.target - self.tolerance < self.target + self.tolerance < 1
        ):
            raise ValueError(
                f"need 0 < target - tolerance and target + tolerance < 1 with tolerance > 0, "
                f"got target={self.target}, tolerance={self.tolerance}"
            )

    def side(self, sparsity: float) -> int:
        """:data:`BELOW`, :data:`INSIDE` or :data:`ABOVE` for a final sparsity."""
        if sparsity < self.target - self.tolerance:
            return BELOW
        if sparsity > self.target + self.tolerance:
            return ABOVE
        return INSIDE

    def logit_width(self) -> float:
        """Width of the band in logit units."""
        return logit(self.target + self.tolerance) - logit(self.target - self.tolerance)


@dataclass(frozen=True)
class Limits:
    """Where a lane may look, in ``x = ln λ``.

    Attributes:
        start_lo: lower end of the starting window (the user's λ range).
        start_hi: upper end of the starting window.
        floor: smallest ``x`` ever proposed.
        ceiling: largest ``x`` ever proposed.
        step: largest move past the last one-sided result (``ln expand_factor``).
    """

    start_lo: float
    start_hi: float
    floor: float
    ceiling: float
    step: float

    @classmethod
    def from_lambdas(
        cls,
        lambda_range: tuple[float, float],
        floor: float,
        ceiling: float,
        expand_factor: float,
    ) -> Limits:
        """Build the limits from λ values.

        Raises:
            ValueError: unless ``0 < floor <= range[0] < range[1] <= ceiling`` and
                ``expand_factor > 1``.
        """
        lo, hi = lambda_range
        if not (0 < floor <= lo < hi <= ceiling and math.isfinite(ceiling)):
            raise ValueError(
                "need 0 < lambda_floor <= lambda_range[0] < lambda_range[1] <= lambda_ceiling, "
                f"got floor={floor}, range={lambda_range}, ceiling={ceiling}"
            )
        if not expand_factor > 1:
            raise ValueError(f"expand_factor must be > 1, got {expand_factor}")
        logs = (math.log(v) for v in (lo, hi, floor, ceiling, expand_factor))
        return cls(*logs)


@dataclass(frozen=True)
class Observation:
    """One finished trial of a lane.

    Attributes:
        x: ``ln λ`` of the trial.
        side: where its sparsity fell relative to the band.
        sparsity: the final sparsity; for a bound (a trial stopped early because it could no
            longer land) the estimate of its final sparsity, or ``None`` without one.
    """

    x: float
    side: int
    sparsity: float | None = None


@dataclass(frozen=True)
class Decision:
    """What a lane wants next.

    ``kind`` is ``"propose"`` (try ``x``), ``"wait"`` (nothing useful until a pending trial
    finishes), ``"landed"`` (a trial is within the band) or ``"exhausted"`` (``reason`` says why).
    """

    kind: Literal["propose", "wait", "landed", "exhausted"]
    x: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class _Window:
    """Where the next proposals go: ``[lo, hi]``, the best single guess ``centre``, the
    distance ``spread`` between concurrent proposals, the least distance ``obs_gap`` to a
    finished result, and which side of ``centre`` is tried first."""

    lo: float
    hi: float
    centre: float
    spread: float
    obs_gap: float = math.inf
    upwards_first: bool = False


def bracket(observations: Sequence[Observation]) -> tuple[float | None, float | None]:
    """The tightest ``(x_lo, x_hi)``: largest ``x`` below the band under the smallest above it.

    A below-band result at or past ``x_hi`` contradicts monotonicity (noise) and is ignored.
    """
    above = [o.x for o in observations if o.side == ABOVE]
    x_hi = min(above) if above else None
    below = [o.x for o in observations if o.side == BELOW and (x_hi is None or o.x < x_hi)]
    return (max(below) if below else None), x_hi


def decide(
    observations: Sequence[Observation],
    pending: Sequence[float],
    failed: Sequence[float],
    band: Band,
    limits: Limits,
    start_pull: float = START_PULL,
) -> Decision:
    """The next step of a lane.

    Args:
        observations: finished trials, in completion order.
        pending: ``x`` of suggested trials that have not finished.
        failed: ``x`` of trials that failed (error, missing or non-finite metric).
        band: the target band.
        limits: where the lane may look.
        start_pull: how far the first proposal goes towards the prior's target
            (:data:`START_PULL`, :data:`ONE_AT_A_TIME_PULL`).

    Returns:
        The decision; a proposal is never within the crowding gap of a pending ``x``.
    """
    if any(o.side == INSIDE for o in observations):
        return Decision("landed")
    x_lo, x_hi = bracket(observations)
    reason = _dead_end(observations, x_lo, x_hi, limits)
    if reason:
        return Decision("exhausted", reason=reason)
    if x_lo is not None and x_hi is not None and x_hi - x_lo < MIN_WIDTH:
        # Collapsed: the band is crossed between two nearby λ; noise may still land a probe.
        width = x_hi - x_lo
        window = _Window(x_lo, x_hi, x_lo + width / 2, width / 4, width / 8)
    elif x_lo is not None and x_hi is not None:
        window = _narrow(observations, band, x_lo, x_hi)
    elif x_lo is not None:
        window = _one_sided(observations, pending, band, limits, x_lo, +1)
    elif x_hi is not None:
        window = _one_sided(observations, pending, band, limits, x_hi, -1)
    else:
        width = limits.start_hi - limits.start_lo
        # The prior response (slope PRIOR_SLOPE, 50% in the middle of the window) puts the
        # target at middle + logit(target) / PRIOR_SLOPE; go part of the way there.
        middle = limits.start_lo + width / 2
        pull = start_pull * logit(band.target) / PRIOR_SLOPE
        centre = min(max(middle + pull, limits.start_lo), limits.start_hi)
        # Sparsity grows with λ: for a high target the second guess goes up first.
        up = band.target > 0.5
        window = _Window(
            limits.start_lo, limits.start_hi, centre, width * START_SPREAD, upwards_first=up
        )
    x = _place(window, [o.x for o in observations], pending, failed)
    if x is not None:
        return Decision("propose", x=x)
    if pending:
        return Decision("wait")
    return Decision("exhausted", reason="every λ left near the estimate failed twice")


def _dead_end(
    observations: Sequence[Observation], x_lo: float | None, x_hi: float | None, limits: Limits
) -> str:
    """Why the lane cannot go on (empty when it can)."""
    if x_hi is None and x_lo is not None and x_lo >= limits.ceiling - _EDGE:
        return f"below the band at the λ ceiling {math.exp(x_lo):.4g}"
    if x_lo is None and x_hi is not None and x_hi <= limits.floor + _EDGE:
        return f"above the band at the λ floor {math.exp(x_hi):.4g}"
    if x_lo is not None and x_hi is not None and x_hi - x_lo < MIN_WIDTH:
        centre = (x_lo + x_hi) / 2
        nearby = sum(abs(o.x - centre) <= MIN_WIDTH for o in observations)
        if x_hi - x_lo < MIN_PROBE_WIDTH or nearby >= 2 + COLLAPSE_PROBES:
            return (
                f"no λ lands: sparsity jumps over the band between λ={math.exp(x_lo):.4g} "
                f"and λ={math.exp(x_hi):.4g}"
            )
    return ""


def _one_sided(
    observations: Sequence[Observation],
    pending: Sequence[float],
    band: Band,
    limits: Limits,
    edge: float,
    direction: int,
) -> _Window:
    """Window past ``edge`` (the result nearest the band) when the band is not bracketed yet.

    A pending trial past the edge caps the window: until it reports, a proposal beyond it is a
    guess it will soon make moot (seen with early stopping, where a stopped trial reports first
    and its bound, without a usable value, would otherwise send the next trial a full
    expansion step past the pending one).
    """
    if direction > 0:
        far = min(edge + limits.step, limits.ceiling)
    else:
        far = max(edge - limits.step, limits.floor)
    ahead = [direction * (p - edge) for p in pending if direction * (p - edge) > 0]
    if ahead:
        far = edge + direction * min(*ahead, abs(far - edge))
    near = edge + direction * min(MIN_STEP, abs(far - edge))
    lo, hi = (near, far) if direction > 0 else (far, near)
    y_t = logit(band.target)
    fit = _line(_fit_points(observations, y_t), y_t)
    if fit is None:
        step = abs(far - edge) if direction > 0 else min(abs(far - edge), COLLAPSE_STEP)
        return _Window(lo, hi, edge + direction * step, abs(far - edge) / 4, MIN_STEP / 2)
    centre = min(max((y_t - fit[0]) / fit[1], lo), hi)
    spread = _spread(centre, observations, band.logit_width() / fit[1])
    return _Window(lo, hi, centre, spread, MIN_STEP / 2)


def _narrow(observations: Sequence[Observation], band: Band, x_lo: float, x_hi: float) -> _Window:
    """Window inside the bracket around the interpolated ``x`` of the target."""
    width = x_hi - x_lo
    y_t = logit(band.target)
    fit = _line(_end_points(observations, x_lo, x_hi), y_t)
    stalled = _stalled(observations)
    margin = (STALL_MARGIN if stalled else MARGIN) * width
    if fit is None:
        spread = BISECT_SPREAD * width
        return _Window(x_lo + margin, x_hi - margin, x_lo + width / 2, spread, margin / 2)
    band_x = band.logit_width() / fit[1]
    centre = (y_t - fit[0]) / fit[1]
    lo_margin = hi_margin = margin
    if not stalled:
        # An end whose own result sits next to the band may be approached to half a band width.
        near = min(margin, max(band_x / 2, MIN_WIDTH / 4))
        for o in observations:
            if (
                o.sparsity is not None
                and abs(logit(o.sparsity) - y_t) <= NEAR_BAND * band.logit_width()
            ):
                if o.x == x_lo:
                    lo_margin = near
                elif o.x == x_hi:
                    hi_margin = near
    lo, hi = x_lo + lo_margin, x_hi - hi_margin
    centre = min(max(centre, lo), hi)
    return _Window(
        lo, hi, centre, _spread(centre, observations, band_x), min(lo_margin, hi_margin) / 2
    )


def _spread(centre: float, observations: Sequence[Observation], band_x: float) -> float:
    """Distance between concurrent proposals: the band's width in ``x``, or more when far from data.

    An interpolation is only as good as the distance to the finished result nearest ``centre``;
    the spread grows with that distance.
    """
    distances = [abs(centre - o.x) for o in observations if o.sparsity is not None]
    nearest = min(distances) if distances else 0.0
    return max(band_x, DISTANCE_SPREAD * nearest)


def _stalled(observations: Sequence[Observation]) -> bool:
    """Whether the last two results that narrowed an existing bracket moved the same end.

    Replays the observations in completion order; results outside the bracket of their time
    (stale parallel trials) and results from before a bracket existed do not count.
    """
    x_lo: float | None = None
    x_hi: float | None = None
    moved: list[int] = []
    for o in observations:
        bracketed = x_lo is not None and x_hi is not None
        if o.side == BELOW and (x_lo is None or o.x > x_lo) and (x_hi is None or o.x < x_hi):
            x_lo = o.x
            if bracketed:
                moved.append(BELOW)
        elif o.side == ABOVE and (x_hi is None or o.x < x_hi) and (x_lo is None or o.x > x_lo):
            x_hi = o.x
            if bracketed:
                moved.append(ABOVE)
    return len(moved) >= 2 and moved[-1] == moved[-2]


def _end_points(
    observations: Sequence[Observation], x_lo: float, x_hi: float
) -> list[tuple[float, float]]:
    """``(x, logit s)`` of the finished results at the bracket ends: both, or none.

    A bound has no value and a saturated result (:func:`_saturated`) no usable logit; with one
    end alone a line would rest on the prior slope, which the steep rise towards full sparsity
    makes wrong by a factor of several, so such a bracket is bisected instead. Results further
    out are left out on purpose: on a sigmoid they sit on a flatter part and bend the line
    (tried: adding the next nearest result costs trials on steep responses).
    """
    points = [
        (o.x, logit(o.sparsity))
        for o in observations
        if o.sparsity is not None and not _saturated(o.sparsity) and o.x in (x_lo, x_hi)
    ]
    return points if len(points) == 2 else []


def _saturated(sparsity: float) -> bool:
    """Whether a sparsity is within :data:`SATURATION` of 0 or 1 (its logit is mostly noise)."""
    return not SATURATION < sparsity < 1.0 - SATURATION


def _fit_points(
    observations: Sequence[Observation], y_t: float, n: int = FIT_POINTS
) -> list[tuple[float, float]]:
    """``(x, logit s)`` of the finished results nearest the target in logit, nearest first."""
    points = [
        (o.x, logit(o.sparsity))
        for o in observations
        if o.sparsity is not None and not _saturated(o.sparsity)
    ]
    points.sort(key=lambda p: (abs(p[1] - y_t), p[0]))
    return points[:n]


def _line(points: Sequence[tuple[float, float]], y_t: float) -> tuple[float, float] | None:
    """Weighted least-squares ``y = a + b x`` pulled towards the prior slope.

    Minimises ``Σ w_i (y_i − a − b x_i)² + PRIOR_WEIGHT Σ w_i (b − PRIOR_SLOPE)²`` with weights
    ``w_i = 1 / (|y_i − y_t| + FIT_SOFTENING)²``: the line follows the results nearest the
    target, and one point alone gets the prior slope.

    Returns:
        ``(a, b)``, or ``None`` for no points or a slope that is not positive.
    """
    if not points:
        return None
    w = [1.0 / (abs(y - y_t) + FIT_SOFTENING) ** 2 for _, y in points]
    total = sum(w)
    mx = sum(wi * x for wi, (x, _) in zip(w, points, strict=True)) / total
    my = sum(wi * y for wi, (_, y) in zip(w, points, strict=True)) / total
    sxx = sum(wi * (x - mx) ** 2 for wi, (x, _) in zip(w, points, strict=True))
    sxy = sum(wi * (x - mx) * (y - my) for wi, (x, y) in zip(w, points, strict=True))
    prior = PRIOR_WEIGHT * total
    denominator = sxx + prior
    slope = (sxy + prior * PRIOR_SLOPE) / denominator if denominator > 1e-12 else PRIOR_SLOPE
    if not slope > 1e-6:
        return None
    return my - slope * mx, slope


def _place(
    window: _Window, done: Sequence[float], pending: Sequence[float], failed: Sequence[float]
) -> float | None:
    """First point of ``centre, centre ∓ spread, centre ∓ 2 spread, …`` that is free.

    Free: not within ``spread / 2`` of a pending ``x``, and not near a λ that failed twice. A λ
    that failed once is retried once, shifted by :data:`RETRY_SHIFT` towards the window middle.
    """
    gap = window.spread / 2
    obs_gap = min(gap, window.obs_gap)
    middle = (window.lo + window.hi) / 2
    offsets = [0.0]
    for k in range(1, _N_SPREAD + 1):
        pair = [-k * window.spread, k * window.spread]
        offsets += pair[::-1] if window.upwards_first else pair
    for offset in offsets:
        x = window.centre + offset
        if not window.lo <= x <= window.hi:
            continue
        near = [f for f in failed if abs(f - x) < FAIL_RADIUS]
        if len(near) >= 2:
            continue
        if near:
            shift = RETRY_SHIFT if middle >= near[0] else -RETRY_SHIFT
            x = min(max(near[0] + shift, window.lo), window.hi)
        if any(abs(x - p) < gap for p in pending) or any(abs(x - d) < obs_gap for d in done):
            continue
        return x
    return None
