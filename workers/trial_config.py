"""One trial's configuration: the job's spec plus what the searcher (or the comparison) chose.

``TrialConfig`` composes the str_core configs; ``dataclasses.asdict`` of it is the single
serialised form of a trial (results, and later MLflow params). A search trial is STR at the
searcher's (λ, ``s_init``); a comparison trial is one method at one seed (:func:`method_trial`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from str_core.config import DataConfig, PruneConfig, STRConfig, TrainConfig
from strsearch.spec import STR_METHODS, SearchSpec

_STR_VARIANTS: dict[str, dict[str, Any]] = {
    "str": {},
    "str_l1": {"training": {"penalty": "l1"}},
    "str_exp": {"reparam": {"threshold_fn": "exp"}},
    "str_channel": {"reparam": {"granularity": "channel"}},
}
"""What each searched method changes in the spec (the STR ablations)."""


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains with: STR (``str_config``) or a pruning baseline
    (``prune``), never both."""

    model: str
    data: DataConfig
    train: TrainConfig
    str_config: STRConfig | None
    prune: PruneConfig | None = None
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Row:
    """One comparison trial: a method at a seed, with its λ and ``s_init`` (STR methods) or
    its per-layer budget (``str_to_*``: the one the ``str`` search learnt)."""

    method: str
    seed: int
    weight_decay: float
    s_init: float | None = None
    budget: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (a Tune trial config's ``row``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def variant_spec(spec: SearchSpec, method: str) -> SearchSpec:
    """The STR search of ``method`` (``str`` or an ablation) within a comparison job: the spec
    with the method's changes, no ``methods``, and the comparison's first seed."""
    if method not in STR_METHODS:
        raise ValueError(f"{method!r} is not a searched STR method ({sorted(STR_METHODS)})")
    data = spec.model_dump(mode="json")
    for section, changes in _STR_VARIANTS[method].items():
        data[section] = {**data[section], **changes}
    data["methods"] = None
    data["search"] = {**data["search"], "seed": spec.comparison.seeds[0]}
    return SearchSpec.model_validate(data)


def _train_config(spec: SearchSpec, *, weight_decay: float, seed: int) -> TrainConfig:
    recipe = spec.training
    return TrainConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        optimizer=recipe.optimizer,
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=weight_decay,
        threshold_weight_decay=recipe.threshold_weight_decay,
        other_weight_decay=recipe.other_weight_decay,
        warmup_epochs=recipe.warmup_epochs,
        schedule=recipe.schedule,
        min_lr=recipe.min_lr,
        label_smoothing=recipe.label_smoothing,
        penalty=recipe.penalty,
        seed=seed,
        device="cuda" if spec.resources.gpus_per_trial > 0 else "cpu",
    )


def _data_config(spec: SearchSpec) -> DataConfig:
    return DataConfig(name=spec.dataset, root=spec.data_root, val_fraction=spec.val_fraction)


def trial_config(
    spec: SearchSpec, *, weight_decay: float, s_init: float, seed: int | None = None
) -> TrialConfig:
    """Compose the str_core configs of the STR trial ``(weight_decay, s_init)`` of ``spec``
    (trained with ``search.seed`` unless ``seed`` is given)."""
    return TrialConfig(
        model=spec.model,
        data=_data_config(spec),
        train=_train_config(
            spec, weight_decay=weight_decay, seed=spec.search.seed if seed is None else seed
        ),
        str_config=STRConfig(
            s_init=s_init,
            threshold_fn=spec.reparam.threshold_fn,
            granularity=spec.reparam.granularity,
            exclude=tuple(spec.reparam.exclude),
        ),
    )


def _prune_config(spec: SearchSpec, row: Row) -> PruneConfig:
    method, allocation = {
        "gmp": ("gmp", "uniform"),
        "erk": ("gmp", "erk"),
        "global_magnitude": ("global_magnitude", "uniform"),
        "dnw": ("dnw", "uniform"),
        "str_to_gmp": ("gmp", "given"),
        "str_to_dnw": ("dnw", "given"),
        "budget_gmp": ("gmp", "given"),
        "budget_dnw": ("dnw", "given"),
    }[row.method]
    budget = None
    if allocation == "given":
        budget = row.budget if row.method.startswith("str_to_") else spec.comparison.budget
        if not budget:
            raise ValueError(f"method {row.method!r} has no per-layer budget to train with")
    return PruneConfig(
        target_sparsity=spec.target_sparsity,
        method=method,  # type: ignore[arg-type]
        allocation=allocation,  # type: ignore[arg-type]
        budget=dict(budget) if budget else None,
        start_fraction=spec.comparison.prune_start,
        end_fraction=spec.comparison.prune_end,
    )


def method_trial(spec: SearchSpec, row: Row) -> TrialConfig:
    """The trial of one comparison row: STR methods at the λ / ``s_init`` their search found,
    the pruning baselines at exactly the target with the comparison's weight decay."""
    if row.method in STR_METHODS:
        if row.s_init is None:
            raise ValueError(f"an STR row needs s_init: {row}")
        variant = variant_spec(spec, row.method)
        return trial_config(
            variant, weight_decay=row.weight_decay, s_init=row.s_init, seed=row.seed
        )
    return TrialConfig(
        model=spec.model,
        data=_data_config(spec),
        train=_train_config(spec, weight_decay=row.weight_decay, seed=row.seed),
        str_config=None,
        prune=_prune_config(spec, row),
    )
