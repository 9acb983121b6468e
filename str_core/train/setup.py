"""Build a model and its data from configs: the one place that composes the components.

The CLI and the search workers both start a training run here, so a run is fully described by
``(model name, DataConfig, STRConfig or None, TrainConfig)`` (plus a ``PruneConfig`` for the
pruning baselines) and reproduced by the same values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from str_core.config import DataConfig, PruneConfig, STRConfig, TrainConfig
from str_core.data import DatasetSplits, load_dataset
from str_core.layers import sparsify
from str_core.models import create_model, get_model_info
from str_core.pruning.masks import attach_masks
from str_core.train.checkpoint import load_dense_weights


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class RunSetup:
    """A model ready to train and the data it trains on."""

    model: nn.Module
    data: DatasetSplits


def build_run(
    model_name: str,
    data_cfg: DataConfig,
    train_cfg: TrainConfig,
    str_cfg: STRConfig | None,
    *,
    init_checkpoint: str | Path | None = None,
    prune: PruneConfig | None = None,
) -> RunSetup:
    """Load the data, then build the model (seeded with ``train_cfg.seed``), STR unless ``str_cfg``
    is ``None``, optionally starting from a dense checkpoint.

    With ``prune`` (a pruning baseline; ``str_cfg`` must be ``None``), the dense model gets the
    masks of :func:`str_core.pruning.attach_masks`; train it with
    ``callbacks=str_core.pruning.pruning_callbacks(prune)``. An STR budget is transferred with
    ``PruneConfig(method="gmp" or "dnw", allocation="given", budget=<learnt budget>)``.

    Raises:
        KeyError: unknown model or dataset name (the message lists valid names).
        ValueError: the model cannot take the dataset's inputs, the checkpoint does not fit, both
            ``str_cfg`` and ``prune`` are given, or ``prune``'s budget does not fit the model.
    """
    if str_cfg is not None and prune is not None:
        raise ValueError("give either str_cfg (STR) or prune (a pruning baseline), not both")
    info = get_model_info(model_name)
    data = load_dataset(data_cfg)
    if len(info.input_shape) != len(data.input_shape):
        raise ValueError(
            f"model {model_name!r} takes inputs shaped {info.input_shape} but dataset "
            f"{data.name!r} gives {data.input_shape}"
        )
    seed_everything(train_cfg.seed)
    model = create_model(
        model_name,
        num_classes=data.num_classes,
        in_channels=data.input_shape[0],
        str_config=None,
    )
    if init_checkpoint is not None:
        load_dense_weights(model, init_checkpoint)
    if str_cfg is not None:
        sparsify(model, str_cfg)
    if prune is not None:
        attach_masks(model, prune)
    return RunSetup(model=model, data=data)
