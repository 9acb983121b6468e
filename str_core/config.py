"""Plain, frozen configuration dataclasses: one per component, composed by the caller.

Each component owns its defaults. ``dataclasses.asdict`` of a config is the single serialised form
(results files, checkpoints, later MLflow params and job rows); ``from_dict`` reads it back and
rejects unknown keys so a typo never passes silently. ``version`` lets old serialised configs load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Self, TypeVar

from str_core.budgets import validate_budget

Granularity = Literal["layer", "channel"]
OptimizerName = Literal["sgd", "adam"]
ScheduleName = Literal["cosine", "constant"]
PenaltyName = Literal["l2", "l1"]
PruneMethod = Literal["gmp", "global_magnitude", "dnw"]
Allocation = Literal["uniform", "erk", "given"]

_C = TypeVar("_C")


class _FromDict:
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build the config from ``asdict`` output.

        Raises:
            ValueError: on a key the config does not have.
        """
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; valid: {sorted(names)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


@dataclass(frozen=True)
class STRConfig(_FromDict):
    """How prunable layers are reparameterised (STR, arXiv 2002.03231).

    Attributes:
        s_init: initial value of the threshold parameter ``s``; the threshold is ``g(s_init)``.
            With sigmoid, -5 gives 0.0067, small against PyTorch's default init of small layers;
            very negative values (the paper's ImageNet runs used -3200) start with no pruning.
        threshold_fn: name of ``g`` in ``str_core.layers.THRESHOLD_FUNCTIONS``.
        granularity: one threshold per layer (``"layer"``) or per output channel (``"channel"``).
        exclude: module names (``model.named_modules()`` keys) to keep dense.
    """

    s_init: float = -5.0
    threshold_fn: str = "sigmoid"
    granularity: Granularity = "layer"
    exclude: tuple[str, ...] = ()
    version: int = 1

    def __post_init__(self) -> None:
        if self.granularity not in ("layer", "channel"):
            raise ValueError(f"granularity must be 'layer' or 'channel', got {self.granularity!r}")


@dataclass(frozen=True)
class TrainConfig(_FromDict):
    """Training recipe. Defaults follow the paper's recipe where it applies to small data.

    Weight decay: ``weight_decay`` (λ) applies to the weights of prunable layers.
    ``threshold_weight_decay`` and ``other_weight_decay`` (BN parameters and biases) default to
    ``None``, meaning "same as λ": the paper decays every parameter, thresholds included, which is
    what makes thresholds rise.

    ``penalty`` chooses what those coefficients mean: ``"l2"`` (the paper) is torch's weight
    decay, λ·p added to the gradient; ``"l1"`` (an ablation) adds λ·sign(p) instead, the
    subgradient of λ·‖p‖₁ (see :func:`str_core.train.optim.add_l1_gradients`).
    """

    epochs: int = 30
    batch_size: int = 128
    optimizer: OptimizerName = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    threshold_weight_decay: float | None = None
    other_weight_decay: float | None = None
    warmup_epochs: int = 0
    schedule: ScheduleName = "cosine"
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "cpu"
    penalty: PenaltyName = "l2"
    version: int = 1

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.optimizer in ("sgd", "adam"), "optimizer must be 'sgd' or 'adam'"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            ((self.threshold_weight_decay or 0) >= 0, "threshold_weight_decay must be >= 0"),
            ((self.other_weight_decay or 0) >= 0, "other_weight_decay must be >= 0"),
            (0 <= self.warmup_epochs <= self.epochs, "warmup_epochs must be in [0, epochs]"),
            (self.schedule in ("cosine", "constant"), "schedule must be 'cosine' or 'constant'"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.penalty in ("l2", "l1"), "penalty must be 'l2' or 'l1'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

    @property
    def threshold_decay(self) -> float:
        """Weight decay applied to STR thresholds."""
        wd = self.threshold_weight_decay
        return self.weight_decay if wd is None else wd

    @property
    def other_decay(self) -> float:
        """Weight decay applied to BN parameters and biases."""
        wd = self.other_weight_decay
        return self.weight_decay if wd is None else wd


@dataclass(frozen=True)
class DataConfig(_FromDict):
    """Which dataset, where it lives, and how it is split.

    Attributes:
        name: a dataset registered in ``str_core.data``.
        root: folder of a dataset that is read from disk (CIFAR-10, image folders).
        val_fraction: share of the training data held out for validation (fixed seeded split).
        split_seed: seed of the train/validation split; independent of the training seed, so
            every trial of a search sees the same split.
        augment: random crop/flip for image datasets that support it.
        image_size: side of the square images fed to the model (image datasets; ``None`` means
            the dataset's default: 32 for CIFAR-10, 224 for image folders).
    """

    name: str = "digits"
    root: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    augment: bool = True
    image_size: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError("DataConfig: val_fraction must be in [0, 1)")


@dataclass(frozen=True)
class PruneConfig(_FromDict):
    """A magnitude-pruning baseline trained to a requested sparsity (no λ search needed).

    Attributes:
        target_sparsity: overall sparsity over all prunable weights, in ``(0, 1)``.
        method: ``"gmp"`` (gradual magnitude pruning, Zhu & Gupta 2017, per layer),
            ``"global_magnitude"`` (gradual, one magnitude ranking over all layers) or ``"dnw"``
            (Discovering Neural Wirings, Wortsman et al. 2019: top-k by magnitude in every
            forward pass from step 0, straight-through gradient).
        allocation: per-layer budget of ``gmp`` and ``dnw``: ``"uniform"`` (every layer at the
            target), ``"erk"`` (Erdős–Rényi-Kernel, Evci et al. 2020) or ``"given"`` (``budget``);
            ignored by ``global_magnitude``.
        budget: with ``allocation="given"``: layer name -> sparsity (a learnt STR budget or a
            budget file), rescaled so that the overall sparsity is exactly the target.
        start_fraction: the gradual methods start pruning at this fraction of the training
            steps (ignored by ``dnw``).
        end_fraction: the gradual methods reach the target at this fraction of the steps.
    """

    target_sparsity: float = 0.9
    method: PruneMethod = "gmp"
    allocation: Allocation = "uniform"
    budget: dict[str, float] | None = None
    start_fraction: float = 0.1
    end_fraction: float = 0.6
    version: int = 1

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (0 < self.target_sparsity < 1, "target_sparsity must be in (0, 1)"),
            (
                self.method in ("gmp", "global_magnitude", "dnw"),
                "method must be 'gmp', 'global_magnitude' or 'dnw'",
            ),
            (
                self.allocation in ("uniform", "erk", "given"),
                "allocation must be 'uniform', 'erk' or 'given'",
            ),
            (
                0 <= self.start_fraction < self.end_fraction <= 1,
                "need 0 <= start_fraction < end_fraction <= 1",
            ),
            (
                self.allocation != "given" or self.budget is not None,
                "allocation 'given' needs a budget (layer name -> sparsity)",
            ),
            (
                self.allocation == "given" or self.budget is None,
                "a budget is only used with allocation 'given'",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PruneConfig: {message}")
        if self.budget is not None:
            if not isinstance(self.budget, dict):
                raise ValueError("PruneConfig: budget must be a dict of layer name -> sparsity")
            try:
                budget = validate_budget(self.budget)
            except ValueError as e:
                raise ValueError(f"PruneConfig: {e}") from e
            if not budget:
                raise ValueError("PruneConfig: budget is empty")
            object.__setattr__(self, "budget", budget)  # a private copy of plain floats


def to_dict(config: Any) -> dict[str, Any]:
    """Serialise any config dataclass to plain JSON-compatible types."""
    return dataclasses.asdict(config)
