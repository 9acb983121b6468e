"""One trial's configuration: the job's spec plus the (λ, s_init) the searcher chose.

``TrialConfig`` composes the str_core configs; ``dataclasses.asdict`` of it is the single
serialised form of a trial (results, and later MLflow params).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from str_core.config import DataConfig, STRConfig, TrainConfig
from strsearch.spec import SearchSpec


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains with."""

    model: str
    data: DataConfig
    train: TrainConfig
    str_config: STRConfig
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def trial_config(spec: SearchSpec, *, weight_decay: float, s_init: float) -> TrialConfig:
    """Compose the str_core configs of the trial ``(weight_decay, s_init)`` of ``spec``."""
    recipe = spec.training
    device = "cuda" if spec.resources.gpus_per_trial > 0 else "cpu"
    return TrialConfig(
        model=spec.model,
        data=DataConfig(name=spec.dataset, root=spec.data_root, val_fraction=spec.val_fraction),
        train=TrainConfig(
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
            seed=spec.search.seed,
            device=device,
        ),
        str_config=STRConfig(
            s_init=s_init,
            threshold_fn=spec.reparam.threshold_fn,
            granularity=spec.reparam.granularity,
            exclude=tuple(spec.reparam.exclude),
        ),
    )
