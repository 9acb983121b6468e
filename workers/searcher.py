"""A Ray Tune searcher that lands STR training on a requested final sparsity.

STR (Kusupati et al., ICML 2020, arXiv 2002.03231) learns each layer's sparsity; the user can
only steer the outcome through the weight decay λ (and ``s_init``). :class:`SparsitySearcher`
inverts that response: it suggests ``{"weight_decay": λ, "s_init": s}`` configs until a trial's
final sparsity lands within ``tolerance`` of ``target``. Each ``s_init`` is an independent lane;
the bracketing and interpolation maths lives in :mod:`workers._bracket` (plain functions, no
Ray). Lanes are served round-robin, one suggestion per free slot; wrap the searcher in
``ConcurrencyLimiter`` to bound the parallel trials (``batch=True`` gives synchronous rounds,
which suits it: each round is proposed with every result of the previous one).

Robustness (STYLE habit 10): completion is idempotent, unknown trial ids are logged and ignored,
and an error, a missing metric or a non-finite sparsity marks the trial failed without touching
the bracket. A failed λ is retried once, slightly moved; a lane whose last ``max_failures``
trials failed is given up. The state is plain JSON (:meth:`SparsitySearcher.state_dict`), saved
atomically, so ``Tuner.restore`` resumes with the same observations and pending trials.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ray.tune.search import Searcher

from workers import _bracket
from workers.files import write_atomically

logger = logging.getLogger(__name__)

STATE_VERSION = 1
"""Version of :meth:`SparsitySearcher.state_dict`'s format."""

TrialStatus = Literal["pending", "final", "above", "below", "failed"]
"""``final``: finished with a valid sparsity; ``above``/``below``: stopped early as a bound."""

_BAND_STOPS = ("above", "below")
_STATUSES = ("pending", "final", "above", "below", "failed")
_SIGNIFICANT = 4  # λ is suggested rounded to 4 significant digits


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial with a valid final sparsity.

    Attributes:
        trial_id: Tune's trial id.
        weight_decay: λ of the trial.
        s_init: initial threshold parameter of the trial.
        sparsity: final sparsity.
        accuracy: the accuracy metric of its last result, if reported and finite.
    """

    trial_id: str
    weight_decay: float
    s_init: float
    sparsity: float
    accuracy: float | None


@dataclass(frozen=True)
class LaneState:
    """Where the search for one ``s_init`` stands.

    Attributes:
        s_init: the lane's ``s_init``.
        status: ``searching``, ``landed`` or ``exhausted`` (``reason`` says why, e.g. the target
            is unreachable for this ``s_init`` within the λ floor/ceiling).
        reason: empty unless exhausted.
        lambda_lo: largest λ whose result fell below the band, if any.
        lambda_hi: smallest λ whose result fell above the band, if any.
        trials: trials suggested in this lane.
        failed: trials of this lane that failed.
    """

    s_init: float
    status: Literal["searching", "landed", "exhausted"]
    reason: str
    lambda_lo: float | None
    lambda_hi: float | None
    trials: int
    failed: int


@dataclass
class _Trial:
    """Everything the searcher keeps about one suggested trial (JSON-compatible fields)."""

    trial_id: str
    lane: int
    weight_decay: float
    status: TrialStatus = "pending"
    sparsity: float | None = None
    accuracy: float | None = None
    reason: str = ""
    latest: dict[str, Any] = field(default_factory=dict)
    estimate: float | None = None  # a bound's estimated final sparsity (``sparsity_estimate``)

    @property
    def x(self) -> float:
        return math.log(self.weight_decay)


class SparsitySearcher(Searcher):
    """Suggest ``(weight_decay, s_init)`` until a trial's final sparsity is within tolerance.

    Args:
        target: requested final sparsity, in ``(0, 1)``.
        tolerance: accepted absolute deviation from ``target``.
        lambda_range: λ window of the first suggestions (the search may leave it).
        s_inits: one independent lane per value.
        max_trials: stop suggesting after this many trials (``None``: no limit).
        metric: result key of the final sparsity.
        accuracy_metric: result key used by :meth:`best` to rank landed trials.
        lambda_floor: smallest λ ever suggested.
        lambda_ceiling: largest λ ever suggested.
        expand_factor: largest factor between the last one-sided λ and the next.
        max_failures: a lane whose last this-many finished trials all failed is given up.
        start_pull: how far, in ``[0, 1]``, the first trial of a lane goes from the middle of
            ``lambda_range`` towards where a prior response puts the target
            (:data:`workers._bracket.ONE_AT_A_TIME_PULL` suits one trial at a time).

    Raises:
        ValueError: on a target band outside ``(0, 1)``, an empty, repeated or non-finite
            ``s_inits``, ``max_trials`` or ``max_failures`` below 1, inconsistent λ limits, or
            ``start_pull`` outside ``[0, 1]``.
    """

    CKPT_FILE_TMPL = "sparsity-searcher-state-{}.json"

    def __init__(
        self,
        *,
        target: float,
        tolerance: float = 0.005,
        lambda_range: tuple[float, float] = (1e-4, 1e-1),
        s_inits: Sequence[float] = (-5.0,),
        max_trials: int | None = None,
        metric: str = "sparsity",
        accuracy_metric: str = "val_acc",
        lambda_floor: float = 1e-7,
        lambda_ceiling: float = 10.0,
        expand_factor: float = 10.0,
        max_failures: int = 3,
        start_pull: float = _bracket.START_PULL,
    ) -> None:
        super().__init__(metric=metric, mode=None)
        self._configure(
            target=target,
            tolerance=tolerance,
            lambda_range=lambda_range,
            s_inits=s_inits,
            max_trials=max_trials,
            metric=metric,
            accuracy_metric=accuracy_metric,
            lambda_floor=lambda_floor,
            lambda_ceiling=lambda_ceiling,
            expand_factor=expand_factor,
            max_failures=max_failures,
            start_pull=start_pull,
        )
        self._trials: dict[str, _Trial] = {}
        self._completed: list[str] = []
        self._next_lane = 0

    def _configure(
        self,
        *,
        target: float,
        tolerance: float,
        lambda_range: tuple[float, float],
        s_inits: Sequence[float],
        max_trials: int | None,
        metric: str,
        accuracy_metric: str,
        lambda_floor: float,
        lambda_ceiling: float,
        expand_factor: float,
        max_failures: int,
        start_pull: float = _bracket.START_PULL,  # absent from states saved before it existed
    ) -> None:
        """Validate and set the configuration (shared by ``__init__`` and state loading)."""
        band = _bracket.Band(float(target), float(tolerance))
        lo, hi = (float(v) for v in lambda_range)
        limits = _bracket.Limits.from_lambdas(
            (lo, hi), float(lambda_floor), float(lambda_ceiling), float(expand_factor)
        )
        inits = [float(s) for s in s_inits]
        if not inits or len(set(inits)) != len(inits) or not all(map(math.isfinite, inits)):
            raise ValueError(f"s_inits must be distinct finite numbers, got {list(s_inits)}")
        if max_trials is not None and max_trials < 1:
            raise ValueError(f"max_trials must be at least 1 or None, got {max_trials}")
        if max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, got {max_failures}")
        if not 0.0 <= start_pull <= 1.0:
            raise ValueError(f"start_pull must be within [0, 1], got {start_pull}")
        self._band = band
        self._limits = limits
        self._floor = float(lambda_floor)
        self._ceiling = float(lambda_ceiling)
        self._metric = metric  # Searcher's own attribute, behind the ``metric`` property
        self._s_inits = inits
        self._max_trials = max_trials
        self._metric_key = metric
        self._accuracy_key = accuracy_metric
        self._max_failures = max_failures
        self._start_pull = float(start_pull)
        self._config: dict[str, Any] = {
            "target": band.target,
            "tolerance": band.tolerance,
            "lambda_range": [lo, hi],
            "s_inits": inits,
            "max_trials": max_trials,
            "metric": metric,
            "accuracy_metric": accuracy_metric,
            "lambda_floor": float(lambda_floor),
            "lambda_ceiling": float(lambda_ceiling),
            "expand_factor": float(expand_factor),
            "max_failures": max_failures,
            "start_pull": float(start_pull),
        }

    # ----------------------------------------------------------------------------- Tune API

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: Mapping[str, Any], **spec: Any
    ) -> bool:
        """Accept Tune's metric, mode and config; the searcher keeps its own objective.

        Returns:
            Always ``True``: the suggested keys are merged into whatever config Tune has.
        """
        if metric is not None and metric != self._metric_key:
            logger.debug("Tune metric %r ignored; landing on %r", metric, self._metric_key)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        """The next ``{"weight_decay": λ, "s_init": s}``, ``None`` (ask later) or ``FINISHED``.

        Ray's annotation leaves out the ``FINISHED`` string that its own protocol returns.
        """
        known = self._trials.get(trial_id)
        if known is not None:
            if known.status == "pending":
                return self._suggestion(known)
            logger.warning("suggest: trial %s already finished; nothing to suggest", trial_id)
            return None
        if self._max_trials is not None and len(self._trials) >= self._max_trials:
            return Searcher.FINISHED
        waiting = False
        n = len(self._s_inits)
        for offset in range(n):
            lane = (self._next_lane + offset) % n
            decision = self._decide(lane)
            if decision.kind == "propose":
                assert decision.x is not None
                lam = min(max(_round(math.exp(decision.x)), self._floor), self._ceiling)
                trial = _Trial(trial_id, lane, lam)
                self._trials[trial_id] = trial
                self._next_lane = (lane + 1) % n
                return self._suggestion(trial)
            waiting = waiting or decision.kind == "wait"
        return None if waiting else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Keep the latest sparsity, accuracy, ``band_stop`` and iteration of a running trial."""
        trial = self._trials.get(trial_id)
        if trial is None or trial.status != "pending":
            logger.debug("on_trial_result: ignoring trial %s (unknown or finished)", trial_id)
            return
        trial.latest = self._digest(result)

    def on_trial_complete(
        self, trial_id: str, result: Mapping[str, Any] | None = None, error: bool = False
    ) -> None:
        """Record a finished trial: a final sparsity, a bound (``band_stop``) or a failure."""
        trial = self._trials.get(trial_id)
        if trial is None:
            logger.warning("on_trial_complete: unknown trial %s ignored", trial_id)
            return
        if trial.status != "pending":
            logger.warning("on_trial_complete: trial %s already completed; ignored", trial_id)
            return
        self._completed.append(trial_id)
        digest = self._digest(result) if result is not None else {}
        band_stop = digest.get("band_stop") or trial.latest.get("band_stop")
        if digest:
            trial.latest = digest
        trial.sparsity = digest.get("sparsity")
        trial.accuracy = digest.get("accuracy")
        if error:
            self._fail(trial, "the trial raised an error")
        elif band_stop is not None:
            if band_stop in _BAND_STOPS:
                trial.status = band_stop
                trial.estimate = digest.get("estimate", trial.latest.get("estimate"))
            else:
                self._fail(trial, f"unknown band_stop {band_stop!r}")
        elif result is None:
            self._fail(trial, "no result")
        elif trial.sparsity is None:
            self._fail(trial, f"metric {self._metric_key!r} missing or not a finite number")
        elif not 0.0 <= trial.sparsity <= 1.0:
            self._fail(trial, f"{self._metric_key}={trial.sparsity} is outside [0, 1]")
        else:
            trial.status = "final"

    # ------------------------------------------------------------------------------ results

    def landed(self) -> list[TrialOutcome]:
        """Finished trials within tolerance of the target, in completion order."""
        return [
            self._outcome(t)
            for t in self._finished()
            if t.sparsity is not None and self._band.side(t.sparsity) == _bracket.INSIDE
        ]

    def best(self) -> TrialOutcome | None:
        """The most accurate landed trial (ties: sparsity closest to the target), or ``None``."""
        landed = self.landed()
        if not landed:
            return None

        def key(t: TrialOutcome) -> tuple[float, float]:
            accuracy = -math.inf if t.accuracy is None else t.accuracy
            return accuracy, -abs(t.sparsity - self._band.target)

        return max(landed, key=key)

    def closest(self) -> TrialOutcome | None:
        """The finished trial with the smallest ``|sparsity − target|``, or ``None``."""
        finished = [self._outcome(t) for t in self._finished()]
        if not finished:
            return None
        return min(finished, key=lambda t: abs(t.sparsity - self._band.target))

    def lanes(self) -> list[LaneState]:
        """One :class:`LaneState` per ``s_init``, in the order given."""
        states = []
        for lane, s_init in enumerate(self._s_inits):
            decision = self._decide(lane)
            trials = [t for t in self._trials.values() if t.lane == lane]
            x_lo, x_hi = _bracket.bracket(self._observations(lane))
            status: Literal["searching", "landed", "exhausted"] = "searching"
            if decision.kind in ("landed", "exhausted"):
                status = decision.kind
            states.append(
                LaneState(
                    s_init=s_init,
                    status=status,
                    reason=decision.reason,
                    lambda_lo=_lambda_at(trials, x_lo),
                    lambda_hi=_lambda_at(trials, x_hi),
                    trials=len(trials),
                    failed=sum(t.status == "failed" for t in trials),
                )
            )
        return states

    def is_finished(self) -> bool:
        """Whether every lane landed or is exhausted, or the trial budget is spent."""
        if self._max_trials is not None and len(self._trials) >= self._max_trials:
            return True
        return all(state.status != "searching" for state in self.lanes())

    @property
    def num_trials(self) -> int:
        """Trials suggested so far."""
        return len(self._trials)

    def latest_result(self, trial_id: str) -> dict[str, Any] | None:
        """The digest of a trial's latest result (sparsity, accuracy, band_stop, iteration)."""
        trial = self._trials.get(trial_id)
        return None if trial is None else dict(trial.latest)

    # -------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-compatible data (no NaN or inf)."""
        return {
            "version": STATE_VERSION,
            "config": json.loads(json.dumps(self._config)),
            "next_lane": self._next_lane,
            "trials": [asdict(t) for t in self._trials.values()],
            "completed": list(self._completed),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the configuration, observations and pending trials with ``state``.

        The saved configuration wins over the one this searcher was built with (a difference
        is logged), so a restored searcher suggests exactly what the saved one would have.

        Raises:
            ValueError: on an unknown version or a malformed state.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported searcher state version {state.get('version')!r}")
        try:
            config = dict(state["config"])
            config["lambda_range"] = tuple(config["lambda_range"])
            lanes = len(config["s_inits"])
            trials = [_Trial(**t) for t in state["trials"]]
            completed = [str(t) for t in state["completed"]]
            next_lane = int(state["next_lane"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed searcher state: {e}") from e
        ids = {t.trial_id for t in trials}
        finished = {t.trial_id for t in trials if t.status != "pending"}
        if len(ids) != len(trials) or len(set(completed)) != len(completed):
            raise ValueError("malformed searcher state: repeated trial ids")
        if set(completed) != finished:
            raise ValueError("malformed searcher state: completed trials do not match statuses")
        for t in trials:
            if not 0 <= t.lane < lanes or t.status not in _STATUSES:
                raise ValueError(f"malformed searcher state: trial {t.trial_id} lane or status")
            if _finite(t.weight_decay) is None or not t.weight_decay > 0:
                raise ValueError(f"malformed searcher state: trial {t.trial_id} weight_decay")
        if json.loads(json.dumps(self._config)) != state["config"]:
            logger.warning(
                "restoring a searcher built with another configuration; using the saved one"
            )
        try:
            self._configure(**config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"malformed searcher state: {e}") from e
        self._trials = {t.trial_id: t for t in trials}
        self._completed = completed
        self._next_lane = next_lane % lanes

    def get_state(self) -> dict[str, Any]:
        """Same as :meth:`state_dict` (Ray's name)."""
        return self.state_dict()

    def set_state(self, state: dict[str, Any]) -> None:
        """Same as :meth:`load_state_dict` (Ray's name)."""
        self.load_state_dict(state)

    def save(self, checkpoint_path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` as JSON, atomically (temporary file, then rename)."""
        text = json.dumps(self.state_dict(), indent=1, allow_nan=False)
        write_atomically(Path(checkpoint_path), text.encode("utf-8"))

    def restore(self, checkpoint_path: str | os.PathLike[str]) -> None:
        """Load a state written by :meth:`save`.

        Raises:
            ValueError: on a malformed or incompatible file.
        """
        self.load_state_dict(json.loads(Path(checkpoint_path).read_text(encoding="utf-8")))

    # ------------------------------------------------------------------------------ helpers

    def _suggestion(self, trial: _Trial) -> dict[str, Any]:
        return {"weight_decay": trial.weight_decay, "s_init": self._s_inits[trial.lane]}

    def _finished(self) -> list[_Trial]:
        """Trials finished with a valid final sparsity, in completion order."""
        return [self._trials[i] for i in self._completed if self._trials[i].status == "final"]

    def _outcome(self, trial: _Trial) -> TrialOutcome:
        assert trial.sparsity is not None
        return TrialOutcome(
            trial.trial_id,
            trial.weight_decay,
            self._s_inits[trial.lane],
            trial.sparsity,
            trial.accuracy,
        )

    def _observations(self, lane: int) -> list[_bracket.Observation]:
        """A lane's finished trials (finals and bounds) in completion order."""
        out = []
        for trial_id in self._completed:
            t = self._trials[trial_id]
            if t.lane != lane:
                continue
            if t.status == "final":
                assert t.sparsity is not None
                out.append(_bracket.Observation(t.x, self._band.side(t.sparsity), t.sparsity))
            elif t.status == "above":
                out.append(_bracket.Observation(t.x, _bracket.ABOVE, t.estimate))
            elif t.status == "below":
                out.append(_bracket.Observation(t.x, _bracket.BELOW, t.estimate))
        return out

    def _decide(self, lane: int) -> _bracket.Decision:
        done = [self._trials[i] for i in self._completed if self._trials[i].lane == lane]
        observations = self._observations(lane)
        if not any(o.side == _bracket.INSIDE for o in observations):
            streak = 0
            for t in reversed(done):
                if t.status != "failed":
                    break
                streak += 1
            if streak >= self._max_failures:
                return _bracket.Decision("exhausted", reason=f"the last {streak} trials failed")
        pending = [t.x for t in self._trials.values() if t.lane == lane and t.status == "pending"]
        failed = [t.x for t in done if t.status == "failed"]
        return _bracket.decide(
            observations, pending, failed, self._band, self._limits, self._start_pull
        )

    def _digest(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The few result values the searcher keeps, JSON-safe (non-finite numbers dropped)."""
        digest: dict[str, Any] = {}
        sparsity = _finite(result.get(self._metric_key))
        if sparsity is not None:
            digest["sparsity"] = sparsity
        accuracy = _finite(result.get(self._accuracy_key))
        if accuracy is not None:
            digest["accuracy"] = accuracy
        band_stop = result.get("band_stop")
        if band_stop is not None:
            digest["band_stop"] = str(band_stop)
            estimate = _finite(result.get("sparsity_estimate"))
            if estimate is not None and 0.0 <= estimate <= 1.0:
                digest["estimate"] = estimate
        iteration = _finite(result.get("training_iteration"))
        if iteration is not None:
            digest["training_iteration"] = int(iteration)
        return digest

    def _fail(self, trial: _Trial, reason: str) -> None:
        trial.status = "failed"
        trial.reason = reason
        logger.warning(
            "trial %s (weight_decay=%g, s_init=%g) failed: %s",
            trial.trial_id,
            trial.weight_decay,
            self._s_inits[trial.lane],
            reason,
        )


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, NaN, inf, bool or not a real number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _lambda_at(trials: Sequence[_Trial], x: float | None) -> float | None:
    """The λ of the trial at ``x = ln λ`` (the exact suggested value, not ``exp(x)``)."""
    if x is None:
        return None
    return next((t.weight_decay for t in trials if t.x == x), math.exp(x))


def _round(value: float) -> float:
    """``value`` to :data:`_SIGNIFICANT` significant digits."""
    return float(f"{value:.{_SIGNIFICANT}g}")
