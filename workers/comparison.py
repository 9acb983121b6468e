"""What a comparison job returns: one row per method (mean ± std over seeds) and every trial.

Plain Python (no Ray, no MLflow): :func:`method_rows` aggregates the trials of a comparison, and
:class:`ComparisonResult` is the job's result. Its ``to_dict()`` keeps the keys of a search's
result (``reached``, ``best``, ``trials``, ``total_epochs``) so the agent, the service and the
CLI handle both kinds of job alike, and adds ``kind: "comparison"``, ``table`` and ``searches``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.result import SearchResult, TrialSummary


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value); ``None`` without values."""
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], 0.0
    return statistics.fmean(values), statistics.stdev(values)


@dataclass(frozen=True)
class MethodRow:
    """One method of the comparison table.

    Attributes:
        method: the method's name (``strsearch.spec.MethodName``).
        seeds: seeds whose trial finished with metrics; ``failed`` counts the others.
        sparsity_mean, sparsity_std: final overall sparsity over those seeds.
        test_acc_mean, test_acc_std: final test accuracy over those seeds.
        val_acc_mean: final validation accuracy (mean).
        flops_mean: sparse multiply-accumulates per example (mean); ``dense_flops`` the dense
            model's.
        nonzero_mean: nonzero prunable weights (mean); ``params`` all prunable weights.
        weight_decay: the λ the method trained with (the searched one for STR methods).
        landed: seeds whose sparsity is within the job's tolerance of the target.
    """

    method: str
    seeds: list[int]
    failed: int
    sparsity_mean: float | None
    sparsity_std: float | None
    test_acc_mean: float | None
    test_acc_std: float | None
    val_acc_mean: float | None
    flops_mean: float | None
    dense_flops: float | None
    nonzero_mean: float | None
    params: float | None
    weight_decay: float | None
    landed: int


def method_rows(methods: Sequence[str], trials: Sequence[TrialSummary]) -> list[MethodRow]:
    """Aggregate the comparison ``trials`` (one per method and seed) into one row per method,
    in ``methods`` order."""
    rows = []
    for method in methods:
        mine = [t for t in trials if t.method == method]
        done = [t for t in mine if t.status != "failed" and t.sparsity is not None]

        def values(name: str, done: list[TrialSummary] = done) -> list[float]:
            found = (getattr(t, name) for t in done)
            return [float(v) for v in found if isinstance(v, int | float) and math.isfinite(v)]

        sparsity = _mean_std(values("sparsity"))
        test_acc = _mean_std(values("test_acc"))
        rows.append(
            MethodRow(
                method=method,
                seeds=sorted(t.seed for t in done if t.seed is not None),
                failed=len(mine) - len(done),
                sparsity_mean=sparsity[0],
                sparsity_std=sparsity[1],
                test_acc_mean=test_acc[0],
                test_acc_std=test_acc[1],
                val_acc_mean=_mean_std(values("val_acc"))[0],
                flops_mean=_mean_std(values("flops"))[0],
                dense_flops=next((t.dense_flops for t in done if t.dense_flops), None),
                nonzero_mean=_mean_std(values("nonzero"))[0],
                params=next((t.params for t in done if t.params), None),
                weight_decay=next((t.weight_decay for t in mine), None),
                landed=sum(t.status == "landed" for t in done),
            )
        )
    return rows


@dataclass(frozen=True)
class ComparisonResult:
    """The outcome of a comparison job.

    Attributes:
        target, tolerance: the job's band.
        methods: the compared methods, in the job's order.
        table: one :class:`MethodRow` per method.
        trials: every trial of the comparison (the searches' included), each with its method.
        compared: ids of the trials the table aggregates (one per method and seed: the
            searches' best trials for the first seed, then the trials of the comparison).
        searches: the search of each STR method (its result without its trials, which are in
            ``trials``).
        reached: every STR method's search landed and every method has at least one finished
            seed.
        best: the most accurate of the ``compared`` trials within tolerance of the target.
    """

    target: float
    tolerance: float
    methods: list[str]
    table: list[MethodRow]
    trials: list[TrialSummary]
    searches: dict[str, SearchResult]
    experiment_path: str
    best: TrialSummary | None = None
    mlflow_run_url: str | None = None
    registered_model: str | None = None
    compared: list[str] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        """See the class docstring."""
        searched = all(s.reached for s in self.searches.values())
        return searched and all(row.seeds for row in self.table)

    @property
    def total_epochs(self) -> int:
        """Training epochs spent over all trials, the searches' included."""
        return sum(t.epochs for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see the module docstring)."""
        return {
            "kind": "comparison",
            "target": self.target,
            "tolerance": self.tolerance,
            "methods": list(self.methods),
            "reached": self.reached,
            "best": None if self.best is None else asdict(self.best),
            "table": [asdict(row) for row in self.table],
            "searches": {
                method: {k: v for k, v in search.to_dict().items() if k != "trials"}
                | {"trials": len(search.trials)}
                for method, search in self.searches.items()
            },
            "trials": [asdict(t) for t in self.trials],
            "compared": list(self.compared),
            "total_epochs": self.total_epochs,
            "experiment_path": self.experiment_path,
            "mlflow_run_url": self.mlflow_run_url,
            "registered_model": self.registered_model,
        }
