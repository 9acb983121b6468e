"""The search spec: a sparsity target plus everything needed to reproduce the search.

One validated, versioned pydantic model shared by the CLI, the workers and (later) the REST service.
It imports pydantic only, so the service can validate jobs without torch or Ray. Every field has a
default, so ``{"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9}`` is complete.
Names of models and datasets are checked against the registries where those are available (the
workers); here they only have to look like names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

SPEC_VERSION = 1

_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def _invalid(self, loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
        """A validation error of a cross-field rule, located at the field ``loc`` names.

        A plain ``ValueError`` in a model validator is located at the model itself; this one
        tells the API client (and the CLI) which field to change.
        """
        detail = InitErrorDetails(
            type=PydanticCustomError("value_error", message), loc=loc, input=value
        )
        return ValidationError.from_exception_data(type(self).__name__, [detail])


class TrainingRecipe(_Strict):
    """How each trial trains (λ and ``s_init`` are chosen by the search)."""

    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    warmup_epochs: int = Field(0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    penalty: Literal["l2", "l1"] = Field(
        "l2",
        description=(
            "How λ penalises the weights: weight decay (l2, the paper) or an L1 penalty "
            "(λ·sign(w) added to the gradient; the STR ablation)."
        ),
    )
    threshold_weight_decay: float | None = Field(
        None, ge=0, description="Decay of STR thresholds; null means the searched λ (the paper)."
    )
    other_weight_decay: float | None = Field(
        None, ge=0, description="Decay of BN parameters and biases; null means the searched λ."
    )

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainingRecipe:
        if self.warmup_epochs > self.epochs:
            raise self._invalid(
                ("warmup_epochs",), "warmup_epochs must not exceed epochs", self.warmup_epochs
            )
        return self


class Reparameterization(_Strict):
    """STR settings other than ``s_init``."""

    threshold_fn: str = Field("sigmoid", pattern=_NAME)
    granularity: Literal["layer", "channel"] = "layer"
    exclude: list[str] = Field(default_factory=list, max_length=1000)


class SearchSettings(_Strict):
    """How λ and ``s_init`` are searched."""

    lambda_min: float = Field(1e-4, gt=0, description="Lower end of the initial λ bracket.")
    lambda_max: float = Field(1e-1, gt=0, description="Upper end of the initial λ bracket.")
    s_init: list[float] = Field(
        default_factory=lambda: [-5.0],
        min_length=1,
        max_length=8,
        description="Each value is searched; the answer is the most accurate landed model.",
    )
    max_trials: int = Field(12, ge=1, le=500)
    parallel_trials: int = Field(
        1,
        ge=1,
        le=256,
        description=(
            "Trials run at once. One at a time needs the fewest training epochs (each trial is "
            "placed with every result so far) and trains on all of a small machine's CPUs "
            "(resources.cpus_per_trial); raise it to the number of GPUs on a GPU cluster "
            "(docs/benchmarks.md, Search efficiency)."
        ),
    )
    seed: int = Field(0, ge=0, description="Training seed of every trial.")
    early_stopping: bool = Field(
        True,
        description=(
            "Stop a trial once its sparsity can no longer land in the tolerance band "
            "(workers/early_stop.py; margins measured on the built-in CNNs, SGD with a cosine "
            "schedule, 10-30 epochs). It saves a fifth of the epochs with one trial at a time, "
            "little with several (docs/benchmarks.md, Search efficiency); turn it off for "
            "recipes far from the measured ones."
        ),
    )

    @model_validator(mode="after")
    def _bracket_ordered(self) -> SearchSettings:
        if self.lambda_min >= self.lambda_max:
            raise self._invalid(
                ("lambda_min",), "lambda_min must be smaller than lambda_max", self.lambda_min
            )
        if len(set(self.s_init)) != len(self.s_init):
            raise self._invalid(("s_init",), "s_init values must be distinct", self.s_init)
        return self


MethodName = Literal[
    "str",
    "str_l1",
    "str_exp",
    "str_channel",
    "gmp",
    "global_magnitude",
    "erk",
    "dnw",
    "str_to_gmp",
    "str_to_dnw",
    "budget_gmp",
    "budget_dnw",
]
"""The methods a comparison job can train (docs/results.md describes each).

``str*`` are searched (λ until the target lands): ``str`` is the paper's STR, ``str_l1`` puts an L1
penalty in place of weight decay, ``str_exp`` uses g = exp, ``str_channel`` one threshold per
output channel. The others are trained once per seed at exactly the target: ``gmp`` (gradual
magnitude pruning, uniform per layer), ``global_magnitude``, ``erk`` (GMP with Erdős–Rényi-kernel
layer budgets), ``dnw`` (top-k per layer with a straight-through gradient), ``str_to_gmp`` /
``str_to_dnw`` (the per-layer budget learnt by the ``str`` search, trained with GMP / DNW) and
``budget_gmp`` / ``budget_dnw`` (the budget given in ``comparison.budget``).
"""

STR_METHODS: frozenset[str] = frozenset({"str", "str_l1", "str_exp", "str_channel"})
"""Methods whose sparsity is searched through λ."""

DEFAULT_METHODS: tuple[MethodName, ...] = (
    "str",
    "gmp",
    "global_magnitude",
    "erk",
    "dnw",
    "str_to_gmp",
)


class ComparisonSettings(_Strict):
    """How the methods of a comparison job are trained (``methods`` set)."""

    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        max_length=16,
        description="Training seeds: every method is trained once per seed.",
    )
    weight_decay: float = Field(
        5e-4, ge=0, le=1, description="Weight decay of the pruning baselines (STR's λ is searched)."
    )
    prune_start: float = Field(
        0.1, ge=0, lt=1, description="Fraction of training at which gradual pruning starts."
    )
    prune_end: float = Field(
        0.6, gt=0, le=1, description="Fraction of training at which gradual pruning ends."
    )
    budget: dict[str, float] | None = Field(
        None,
        max_length=10_000,
        description="Per-layer sparsity (layer name → fraction) of budget_gmp and budget_dnw.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ComparisonSettings:
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise self._invalid(("seeds",), "seeds must be distinct and >= 0", self.seeds)
        if self.prune_start >= self.prune_end:
            raise self._invalid(
                ("prune_start",), "prune_start must be smaller than prune_end", self.prune_start
            )
        for layer, value in (self.budget or {}).items():
            if not 0.0 <= value <= 1.0:
                raise self._invalid(
                    ("budget", layer), "a layer's sparsity must be in [0, 1]", value
                )
        return self


class Resources(_Strict):
    """What one trial needs.

    With ``workers_per_trial`` > 1 a trial trains data-parallel in that many processes, and
    ``cpus_per_trial`` / ``gpus_per_trial`` are what *each* of them gets.
    """

    cpus_per_trial: float | None = Field(
        None,
        gt=0,
        le=1024,
        description=(
            "CPUs (and PyTorch threads) of a trial, of each worker when data-parallel; null: "
            "the cluster's CPUs shared among the trials that run at once, at most the largest "
            "node's and at most 4 (workers/cpus.py)."
        ),
    )
    gpus_per_trial: float = Field(
        0.0, ge=0, le=64, description="GPUs of a trial (of each worker when data-parallel)."
    )
    workers_per_trial: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Data-parallel processes of one trial (Ray Train; NCCL on GPUs, gloo on CPUs). The "
            "batch size stays the global batch and must be a multiple of this number."
        ),
    )

    @model_validator(mode="after")
    def _whole_gpus_when_parallel(self) -> Resources:
        if self.workers_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise self._invalid(
                ("gpus_per_trial",),
                "gpus_per_trial must be a whole number when workers_per_trial > 1 "
                "(two workers must not share a GPU)",
                self.gpus_per_trial,
            )
        return self


class SearchSpec(_Strict):
    """A sparsity-target job."""

    version: Literal[1] = 1
    model: str = Field(pattern=_NAME, description="Registered model name.")
    dataset: str = Field(pattern=_NAME, description="Registered dataset name.")
    data_root: str | None = Field(None, max_length=4096, description="Folder of a disk dataset.")
    val_fraction: float = Field(0.1, gt=0, lt=1)
    target_sparsity: float = Field(gt=0, lt=1, description="Fraction of prunable weights at zero.")
    tolerance: float = Field(0.005, gt=0, le=0.1, description="Accepted |sparsity − target|.")
    method: Literal["str"] = "str"
    methods: list[MethodName] | None = Field(
        None,
        min_length=1,
        max_length=len(MethodName.__args__),  # type: ignore[attr-defined]
        description=(
            "Compare these methods at the target (a comparison job): each is trained with the "
            "same recipe and seeds. Null: one STR search."
        ),
    )
    comparison: ComparisonSettings = Field(default_factory=ComparisonSettings)
    training: TrainingRecipe = Field(default_factory=TrainingRecipe)
    reparam: Reparameterization = Field(default_factory=Reparameterization)
    search: SearchSettings = Field(default_factory=SearchSettings)
    resources: Resources = Field(default_factory=Resources)

    @model_validator(mode="after")
    def _band_inside_unit_interval(self) -> SearchSpec:
        low, high = self.target_sparsity - self.tolerance, self.target_sparsity + self.tolerance
        if low <= 0 or high >= 1:
            raise self._invalid(
                ("tolerance",),
                "target_sparsity ± tolerance must lie inside (0, 1)",
                self.tolerance,
            )
        if self.training.batch_size % self.resources.workers_per_trial:
            raise self._invalid(
                ("training", "batch_size"),
                "training.batch_size (the global batch) must be a multiple of "
                "resources.workers_per_trial",
                self.training.batch_size,
            )
        if self.methods is not None:
            self._check_methods(self.methods)
        return self

    def _check_methods(self, methods: list[MethodName]) -> None:
        if len(set(methods)) != len(methods):
            raise self._invalid(("methods",), "methods must be distinct", methods)
        if {"str_to_gmp", "str_to_dnw"} & set(methods) and "str" not in methods:
            raise self._invalid(
                ("methods",),
                "str_to_gmp and str_to_dnw train the budget learnt by 'str': add 'str' to methods",
                methods,
            )
        if {"budget_gmp", "budget_dnw"} & set(methods) and not self.comparison.budget:
            raise self._invalid(
                ("comparison", "budget"),
                "budget_gmp and budget_dnw need comparison.budget (layer name → sparsity)",
                self.comparison.budget,
            )
        if self.resources.workers_per_trial > 1:
            raise self._invalid(
                ("resources", "workers_per_trial"),
                "a comparison job (methods set) trains each model in one process: "
                "workers_per_trial must be 1",
                self.resources.workers_per_trial,
            )

    @property
    def is_comparison(self) -> bool:
        """Whether this job compares methods (``methods`` set) instead of one STR search."""
        return self.methods is not None

    def trial_budget(self) -> int:
        """The most trials the job can run: ``search.max_trials`` for a search; for a
        comparison, that many per searched STR method plus one per other (method, seed) and
        per extra seed of each STR method."""
        if self.methods is None:
            return self.search.max_trials
        searched = sum(m in STR_METHODS for m in self.methods)
        seeds = len(self.comparison.seeds)
        return (
            searched * (self.search.max_trials + seeds - 1) + (len(self.methods) - searched) * seeds
        )

    def fingerprint(self) -> str:
        """A short hash of the spec: equal specs give equal fingerprints (names experiments).

        Fields added to version 1 later (:data:`_ADDED_FIELDS`) are left out while at their
        defaults, so a spec that does not use them keeps its fingerprint (and its experiment's
        name) across upgrades."""
        data = self.model_dump(mode="json")
        for path in _ADDED_FIELDS:
            section = data
            for key in path[:-1]:
                section = section[key]
            if section[path[-1]] == _default_at(path):
                del section[path[-1]]
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> SearchSpec:
        """Validate a JSON-like mapping (raises ``pydantic.ValidationError`` naming the fields)."""
        return cls.model_validate(data)


_ADDED_FIELDS: tuple[tuple[str, ...], ...] = (
    ("methods",),
    ("comparison",),
    ("training", "penalty"),
)
"""Fields added to spec version 1 after its release (see :meth:`SearchSpec.fingerprint`)."""


def _default_at(path: tuple[str, ...]) -> Any:
    """The JSON form of the default of the field at ``path`` (``("training", "penalty")``)."""
    model: type[BaseModel] = SearchSpec
    for key in path[:-1]:
        annotation = model.model_fields[key].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise TypeError(f"{'.'.join(path)}: {key} is not a section")
        model = annotation
    field = model.model_fields[path[-1]]
    default = field.get_default(call_default_factory=True)
    return default.model_dump(mode="json") if isinstance(default, BaseModel) else default
