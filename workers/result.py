"""What a search returns: every trial's final metrics and budget, and the best landed model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TrialStatus = Literal["landed", "above", "below", "failed"]


def _per_layer(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class TrialSummary:
    """One trial at its end.

    ``status`` is ``landed`` when the final sparsity is within tolerance of the target, ``above`` or
    ``below`` when it missed on that side, and ``failed`` when the trial raised or reported no
    usable sparsity. ``band_stop`` is set when early stopping ended the trial (its side); then
    ``epochs`` counts the epochs actually run.
    """

    trial_id: str
    weight_decay: float
    s_init: float | None
    status: TrialStatus
    epochs: int
    sparsity: float | None
    val_acc: float | None
    test_acc: float | None
    flops: float | None
    dense_flops: float | None
    budget: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    path: str | None = None
    band_stop: str | None = None
    method: str = "str"
    seed: int | None = None
    nonzero: float | None = None
    params: float | None = None

    @classmethod
    def from_metrics(
        cls,
        trial_id: str,
        config: dict[str, Any],
        metrics: dict[str, Any],
        *,
        target: float,
        tolerance: float,
        error: str | None = None,
        path: str | None = None,
    ) -> TrialSummary:
        """Summarise a trial from its config and last reported metrics."""

        def number(key: str) -> float | None:
            value = metrics.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                return float(value)
            return None

        sparsity = number("sparsity")
        status: TrialStatus
        if error is not None or sparsity is None:
            status = "failed"
        elif abs(sparsity - target) <= tolerance:
            status = "landed"
        else:
            status = "above" if sparsity > target else "below"
        s_init, seed = config.get("s_init"), config.get("seed")
        return cls(
            trial_id=trial_id,
            weight_decay=float(config["weight_decay"]),
            s_init=None if s_init is None else float(s_init),
            status=status,
            epochs=int(metrics.get("epoch", 0) or 0),
            sparsity=sparsity,
            val_acc=number("val_acc"),
            test_acc=number("test_acc"),
            flops=number("flops"),
            dense_flops=number("dense_flops"),
            budget=_per_layer(metrics, "sparsity/"),
            thresholds=_per_layer(metrics, "threshold/"),
            error=error,
            path=path,
            band_stop=band_stop if isinstance(band_stop := metrics.get("band_stop"), str) else None,
            method=str(config.get("method") or "str"),
            nonzero=number("nonzero"),
            params=number("params"),
            seed=None if seed is None else int(seed),
        )


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a search.

    Attributes:
        reached: whether some trial landed within tolerance.
        best: the landed trial with the highest validation accuracy (ties: closest to the target),
            or, when nothing landed, the trial closest to the target.
        trials: every trial, in the order they were created.
        mlflow_run_url: the job's parent run in the MLflow UI, when the search was recorded.
        registered_model: ``name/version`` of the best model in the Model Registry, if any.
    """

    target: float
    tolerance: float
    reached: bool
    best: TrialSummary | None
    trials: list[TrialSummary]
    experiment_path: str
    mlflow_run_url: str | None = None
    registered_model: str | None = None

    @classmethod
    def from_trials(
        cls, target: float, tolerance: float, trials: list[TrialSummary], experiment_path: str
    ) -> SearchResult:
        """Pick the best trial among ``trials``."""
        landed = [t for t in trials if t.status == "landed"]
        best: TrialSummary | None = None
        if landed:
            best = max(landed, key=lambda t: (t.val_acc or 0.0, -abs((t.sparsity or 0) - target)))
        else:
            measured = [t for t in trials if t.sparsity is not None]
            if measured:
                best = min(measured, key=lambda t: abs((t.sparsity or 0) - target))
        return cls(target, tolerance, bool(landed), best, trials, experiment_path)

    @property
    def total_epochs(self) -> int:
        """Training epochs spent over all trials."""
        return sum(t.epochs for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self) | {"total_epochs": self.total_epochs}
