"""Stop a trial early once its final sparsity can no longer land in the tolerance band.

STR's overall sparsity rises fast in the first epochs and then settles (DESIGN §3b,
docs/benchmarks.md "Early stopping"). After a fraction ``f`` of the epochs the sparsity still
to come is bounded: it rises by at most ``G(f)`` and falls by at most ``D(f)`` before the end.
:class:`BandStopRule` stops a trial whose sparsity, moved by those bounds, still misses the band:

- ``"above"`` when ``s(e) − D(f) > T + tol``: even the largest fall keeps it above the band;
- ``"below"`` when ``s(e) + G(f) < T − tol``: even the largest rise keeps it below the band.

Both bounds are envelopes measured on full-length runs (the largest remaining rise / fall seen
at each fraction of training), multiplied by a safety factor and widened by an absolute margin.
The rule is pure (no Ray, no torch) and only reads the epoch just finished, so replaying it over
a recorded trajectory gives exactly the online decision; ``benchmarks/early_stopping.py`` does
that on runs disjoint from the calibration ones and counts the trials that would have landed but
were stopped (zero is required).

Limits of the calibration: the two built-in small CNNs (``digits_cnn``, ``mnist1d_cnn``), SGD
lr 0.1 with a cosine schedule, 10–30 epochs, ``s_init`` −4 to −6. The remaining rise grows as
``s_init`` falls (a lower initial threshold starts sparsity lower, and it keeps rising later).
Runs shorter than :data:`MIN_EPOCHS` are never stopped; for other models and recipes the
envelopes are an assumption (turn early stopping off in the spec, or re-run the benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

BandStop = Literal["above", "below"]

# ---- Constants measured by benchmarks/early_stopping.py on its calibration set: 58 full-length
# runs (1000 epochs) of digits_cnn/digits and mnist1d_cnn/mnist1d, SGD lr 0.1, batch 128, cosine:
# s_init −5 seed 0 at 10 and 30 epochs (λ ∈ {0, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2}),
# s_init −5 seed 1 at 10 epochs, s_init −4 seed 2 at 10 and 30 epochs, s_init −6 seed 3 at 20
# epochs (docs/benchmarks.md "Early stopping", 2026-11-21). Each envelope maps a fraction of
# epochs done, f, to the largest change of overall sparsity from any epoch at a fraction ≥ f to
# the end of the run (so it never increases with f), rounded up to 0.001; a query uses the last
# knot at or before its fraction. The slowest starts rise most late: up to f = 0.75 the rise
# envelope is set by digits, λ = 7e-3, s_init −6, 20 epochs (43% after epoch 5, 76% at the end).
# An envelope measured on the s_init −5 runs alone (0.167 at f = 0.25) stopped that run wrongly.
RISE_ENVELOPE: tuple[tuple[float, float], ...] = (
    (0.2, 0.426),
    (0.25, 0.331),
    (0.3, 0.234),
    (0.35, 0.153),
    (0.4, 0.107),
    (0.45, 0.079),
    (0.5, 0.060),
    (0.55, 0.048),
    (0.6, 0.038),
    (0.65, 0.026),
    (0.7, 0.017),
    (0.75, 0.011),
    (0.8, 0.006),
    (0.85, 0.002),
    (0.9, 0.001),
    (0.95, 0.001),
)
"""(fraction, largest remaining rise of sparsity) knots, measured."""
FALL_ENVELOPE: tuple[tuple[float, float], ...] = ((0.2, 0.0),)
"""(fraction, largest remaining fall) knots, measured: no calibration run ended below its
sparsity at any earlier epoch from 20% on (the largest epoch-to-epoch drop seen was 0.05 pp, on
mnist1d at λ = 3e-2, and later epochs recovered it), so the fall bound is the margin alone."""
SAFETY_FACTOR = 1.5
"""Multiplies both measured envelopes (a guess, checked on the validation set)."""
RISE_MARGIN = 0.01
"""Added to the scaled rise envelope (absolute sparsity; two default tolerances)."""
FALL_MARGIN = 0.01
"""Added to the scaled fall envelope (absolute sparsity; two default tolerances)."""
MIN_FRACTION = 0.2
"""No decision before this fraction of the epochs (early sparsity moves too much)."""
MIN_EPOCHS = 10
"""Runs shorter than this (the shortest calibrated length) are never stopped."""


Knots = tuple[tuple[float, float], ...]


def _envelope(knots: Knots, fraction: float) -> float | None:
    """The value of the last knot at or before ``fraction``; ``None`` before the first knot."""
    value = None
    for knot, bound in knots:
        if fraction + 1e-9 >= knot:
            value = bound
    return value


@dataclass(frozen=True)
class Margins:
    """The bounds a :class:`BandStopRule` uses; the defaults are the measured constants above.

    Attributes:
        rise: ``(fraction, largest remaining rise)`` knots, fractions increasing.
        fall: ``(fraction, largest remaining fall)`` knots, fractions increasing.
        safety_factor: multiplies both envelopes.
        rise_margin: added to the scaled rise envelope.
        fall_margin: added to the scaled fall envelope.
        min_fraction: no decision before this fraction of the epochs.
        min_epochs: runs shorter than this are never stopped.
    """

    rise: Knots = RISE_ENVELOPE
    fall: Knots = FALL_ENVELOPE
    safety_factor: float = SAFETY_FACTOR
    rise_margin: float = RISE_MARGIN
    fall_margin: float = FALL_MARGIN
    min_fraction: float = MIN_FRACTION
    min_epochs: int = MIN_EPOCHS

    def max_rise(self, fraction: float) -> float | None:
        """``G(f)``: how much sparsity may still rise after ``fraction`` of the epochs.

        Returns:
            The bound with margins, or ``None`` before the first knot (no bound known).
        """
        raw = _envelope(self.rise, fraction)
        return None if raw is None else self.safety_factor * raw + self.rise_margin

    def max_fall(self, fraction: float) -> float | None:
        """``D(f)``: how much sparsity may still fall after ``fraction`` of the epochs.

        Returns:
            The bound with margins, or ``None`` before the first knot (no bound known).
        """
        raw = _envelope(self.fall, fraction)
        return None if raw is None else self.safety_factor * raw + self.fall_margin


DEFAULT_MARGINS = Margins()


class BandStopRule:
    """Decide after each epoch whether a trial can still land in ``target ± tolerance``.

    Args:
        target: requested final sparsity.
        tolerance: accepted absolute deviation from ``target``.
        epochs: the trial's full number of epochs.
        margins: the bounds; default the measured :data:`DEFAULT_MARGINS`.

    Raises:
        ValueError: on a band outside ``[0, 1]``, a negative tolerance or ``epochs`` < 1.
    """

    def __init__(
        self, target: float, tolerance: float, epochs: int, margins: Margins = DEFAULT_MARGINS
    ) -> None:
        if not (math.isfinite(target) and math.isfinite(tolerance)) or tolerance < 0:
            raise ValueError(f"bad band: target={target}, tolerance={tolerance}")
        if not 0.0 <= target - tolerance <= target + tolerance <= 1.0:
            raise ValueError(f"band {target} ± {tolerance} is not inside [0, 1]")
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        self.target = float(target)
        self.tolerance = float(tolerance)
        self.epochs = int(epochs)
        self.margins = margins

    def decide(self, epoch: int, sparsity: float) -> BandStop | None:
        """Whether to stop after ``epoch`` (1-based) with overall ``sparsity``.

        Args:
            epoch: epochs finished so far, from 1 to ``epochs``.
            sparsity: overall sparsity after that epoch.

        Returns:
            ``"above"`` or ``"below"`` when the final sparsity cannot land in the band on that
            side, ``None`` to go on. Never stops on the last epoch (the trial ends anyway, and
            its final sparsity tells the searcher more than a bound), before
            ``min_fraction`` of the epochs, in runs shorter than ``min_epochs``, or on a
            non-finite sparsity.
        """
        m = self.margins
        if self.epochs < m.min_epochs or epoch >= self.epochs or not math.isfinite(sparsity):
            return None
        fraction = epoch / self.epochs
        if fraction + 1e-9 < m.min_fraction:
            return None
        fall, rise = m.max_fall(fraction), m.max_rise(fraction)
        if fall is not None and sparsity - fall > self.target + self.tolerance:
            return "above"
        if rise is not None and sparsity + rise < self.target - self.tolerance:
            return "below"
        return None

    def estimate(self, epoch: int, sparsity: float) -> float:
        """A point estimate of the final sparsity of a trial stopped after ``epoch``.

        The sparsity so far plus half the largest remaining rise measured at that fraction of
        the epochs (no safety factor, no margin): the middle of the range the calibration runs
        span. The searcher interpolates with it; a stop decision never rests on it. The estimate
        of a stop lies on the side of the band the stop names.
        """
        raw = _envelope(self.margins.rise, epoch / self.epochs) or 0.0
        return min(1.0, max(0.0, sparsity + raw / 2))
