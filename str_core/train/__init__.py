"""Training: a callback-driven trainer (single-process or data-parallel), optimizer groups,
schedules and checkpoints."""

from str_core.train.callbacks import Callback, EpochMetrics, LayerSnapshot
from str_core.train.checkpoint import load_checkpoint, load_dense_weights, save_checkpoint
from str_core.train.distributed import DistContext, current_context, shard_indices
from str_core.train.evaluate import EvalSums, evaluate, evaluation_sums
from str_core.train.optim import (
    add_l1_gradients,
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
)
from str_core.train.setup import RunSetup, build_run, seed_everything
from str_core.train.trainer import (
    LAST_CHECKPOINT,
    Trainer,
    TrainingDivergedError,
    TrainResult,
    epoch_permutation,
    epoch_seed,
)

__all__ = [
    "LAST_CHECKPOINT",
    "Callback",
    "DistContext",
    "EpochMetrics",
    "EvalSums",
    "LayerSnapshot",
    "RunSetup",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "add_l1_gradients",
    "build_optimizer",
    "build_run",
    "build_scheduler",
    "current_context",
    "epoch_permutation",
    "epoch_seed",
    "evaluate",
    "evaluation_sums",
    "load_checkpoint",
    "load_dense_weights",
    "lr_factor",
    "param_groups",
    "save_checkpoint",
    "seed_everything",
    "shard_indices",
]
