"""A small classification trainer for dense and STR models.

The trainer knows nothing about the model beyond "it maps inputs to logits", nor about Ray or
MLflow: it reports through :class:`~str_core.train.callbacks.Callback` events. Each epoch it
evaluates, measures sparsity and FLOPs (``str_core.metrics``), writes a checkpoint, then emits
``on_epoch_end``.

Determinism: every epoch reseeds torch's RNG and the loader's shuffling from ``(seed, epoch)``, so
an epoch's result depends only on the state at its start. A run resumed from the checkpoint of
epoch k therefore ends with the same weights as an uninterrupted run (on CPU).

Data parallel: when the caller has initialised a ``torch.distributed`` process group (one process
per device; gloo on CPU, NCCL on GPUs), the trainer runs data-parallel over it:

- ``cfg.batch_size`` stays the *global* batch: each rank takes ``batch_size // world_size``
  examples per step (it must divide), so λ, the learning rate and the schedule mean the same
  thing whatever the number of processes;
- every rank draws the same epoch permutation (:func:`epoch_permutation`) and trains on
  ``perm[rank::world]``, padded like ``DistributedSampler`` so that all ranks take the same number
  of steps. When the training set divides by the world size, the union of the ranks' step-k
  batches is the single-process step-k batch, and the averaged gradient is the same;
- the model is wrapped in ``DistributedDataParallel`` for the forward/backward pass, and
  :attr:`Trainer.model` stays the plain module (accounting, checkpoints). BN running statistics
  are taken from rank 0 at the end of every epoch (each rank's BN normalises with its own
  per-rank batch, so BN models are not bit-equal to a single process);
- the step loss is averaged over ranks (callbacks and the divergence check see the global value);
  epoch training loss/accuracy are sums over ranks; validation and test sets are sharded
  (no padding) and their sums reduced, so every rank gets the same metrics;
- rank 0 alone writes checkpoints; ``fit(resume=True)`` loads ``checkpoint_dir/last.pt`` on every
  rank (each rank's ``checkpoint_dir`` must hold it); callbacks run on every rank, and a stop
  requested on any rank stops all ranks after the epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from str_core.config import TrainConfig, to_dict
from str_core.data import DatasetSplits
from str_core.metrics import Accounting, account
from str_core.train.callbacks import Callback, EpochMetrics, LayerSnapshot
from str_core.train.checkpoint import load_checkpoint, save_checkpoint
from str_core.train.distributed import (
    all_reduce_sum,
    any_rank,
    broadcast_buffers,
    current_context,
    shard_indices,
)
from str_core.train.evaluate import EvalSums, evaluation_sums
from str_core.train.optim import (
    add_l1_gradients,
    build_optimizer,
    build_scheduler,
    group_sizes,
    param_groups,
)

LAST_CHECKPOINT = "last.pt"


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :meth:`Trainer.fit`."""

    history: list[EpochMetrics]
    accounting: Accounting
    checkpoint: Path | None

    @property
    def final(self) -> EpochMetrics:
        """Metrics of the last epoch."""
        return self.history[-1]


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed of a (run seed, 0-based epoch) pair."""
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def epoch_permutation(seed: int, epoch: int, n: int) -> list[int]:
    """The shuffled order of ``n`` training examples in ``epoch`` (0-based).

    It is what a ``DataLoader(shuffle=True)`` with a generator seeded by :func:`epoch_seed` draws:
    the loader takes one number from the generator first (the base seed of its worker processes),
    then the permutation.
    """
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    torch.empty((), dtype=torch.int64).random_(generator=gen)  # the loader's worker base seed
    return [int(i) for i in torch.randperm(n, generator=gen).tolist()]


class Trainer:
    """Trains ``model`` on ``data`` with ``cfg``.

    Args:
        model: a classifier mapping a batch of ``data.input_shape`` inputs to logits.
        cfg: the training recipe.
        data: train/validation/test datasets.
        callbacks: receivers of the training events, called in order (on every rank).
        checkpoint_dir: where ``last.pt`` is written after every epoch (``None``: no checkpoints;
            only rank 0 writes).
        num_workers: data-loader worker processes.

    Raises:
        ValueError: under ``torch.distributed``, if ``cfg.batch_size`` is not a multiple of the
            world size.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        data: DatasetSplits,
        *,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
        checkpoint_dir: str | Path | None = None,
        num_workers: int = 0,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.device = torch.device(cfg.device)
        self.model = model.to(self.device)
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.num_workers = num_workers
        self.dist = current_context()
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} is the global batch and must be a multiple of the "
                f"world size {self.dist.world_size}"
            )
        self.rank_batch_size = cfg.batch_size // self.dist.world_size
        self._net: nn.Module = self.model  # what the training step calls
        if self.dist.enabled:
            ids = [self.device] if self.device.type == "cuda" else None
            self._net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = build_optimizer(self.model, cfg)
        train_size = len(data.train)  # type: ignore[arg-type]
        rank_size = math.ceil(train_size / self.dist.world_size)
        self.steps_per_epoch = math.ceil(rank_size / self.rank_batch_size)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.history: list[EpochMetrics] = []
        self.epoch = 0  # number of finished epochs
        self.top5 = data.num_classes > 5
        self.stop_requested = False

    # ----------------------------------------------------------------------------- public API
    @property
    def group_sizes(self) -> dict[str, int]:
        """Parameter count of each optimizer group (``weights``/``thresholds``/``other``)."""
        return group_sizes(param_groups(self.model, self.cfg))

    @property
    def world_size(self) -> int:
        """Number of data-parallel processes (1 without a process group)."""
        return self.dist.world_size

    @property
    def rank(self) -> int:
        """This process's rank (0 without a process group)."""
        return self.dist.rank

    def request_stop(self) -> None:
        """Ask the trainer to stop after the current epoch (callbacks use this)."""
        self.stop_requested = True

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train for ``cfg.epochs`` epochs.

        Args:
            resume: continue from ``checkpoint_dir/last.pt`` when it exists.

        Returns:
            The history, the final per-layer accounting and the checkpoint path.

        Raises:
            TrainingDivergedError: if the loss becomes NaN or infinite.
        """
        if resume and self.checkpoint_dir and (self.checkpoint_dir / LAST_CHECKPOINT).exists():
            self.load_state(load_checkpoint(self.checkpoint_dir / LAST_CHECKPOINT))
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.epoch < self.cfg.epochs and not self.stop_requested:
            metrics = self._run_epoch()
            self.history.append(metrics)
            self.epoch += 1
            self.save()
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
            if self.dist.enabled:
                self.stop_requested = any_rank(self.stop_requested, self.device)
        for cb in self.callbacks:
            cb.on_train_end(self, self.history)
        return TrainResult(
            history=list(self.history),
            accounting=self.measure(),
            checkpoint=self.checkpoint_path if self.dist.is_main else None,
        )

    @property
    def checkpoint_path(self) -> Path | None:
        """Path of the latest checkpoint file (``None`` without a checkpoint directory)."""
        return self.checkpoint_dir / LAST_CHECKPOINT if self.checkpoint_dir else None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": [m.to_dict() for m in self.history],
            "train_config": to_dict(self.cfg),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (model built the same way beforehand)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = [EpochMetrics.from_dict(h) for h in state["history"]]

    def save(self) -> Path | None:
        """Write ``last.pt`` (no-op without a checkpoint directory, and on ranks other than 0)."""
        if self.checkpoint_path is None or not self.dist.is_main:
            return None
        return save_checkpoint(self.checkpoint_path, self.state_dict())

    def measure(self) -> Accounting:
        """Per-layer sparsity, thresholds and FLOPs of the model as it is now."""
        return account(self.model, self.data.input_shape)

    # ----------------------------------------------------------------------------- internals
    def _loader(self, dataset: Dataset[Any], *, shuffle: bool, epoch: int) -> DataLoader[Any]:
        """This rank's batches: a shard of the epoch permutation (training) or of the set in order
        (evaluation). Without a process group, the whole permutation or set."""
        n = len(dataset)  # type: ignore[arg-type]
        order = epoch_permutation(self.cfg.seed, epoch, n) if shuffle else list(range(n))
        if self.dist.enabled:
            order = shard_indices(order, self.dist.rank, self.dist.world_size, pad=shuffle)
        batch_size = self.rank_batch_size if self.dist.enabled else self.cfg.batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=order,
            # seeds the loader's worker processes; its first draw is the one epoch_permutation skips
            generator=torch.Generator().manual_seed(epoch_seed(self.cfg.seed, epoch)),
            num_workers=self.num_workers,
            drop_last=False,
        )

    def _step_loss(self, loss: Tensor) -> float:
        """The step's loss: this rank's, averaged over ranks under ``torch.distributed``."""
        value = float(loss.detach())
        if self.dist.enabled:
            value = all_reduce_sum([value], self.device)[0] / self.dist.world_size
        return value

    def _run_epoch(self) -> EpochMetrics:
        started = time.perf_counter()
        # distinct per rank, so dropout-like randomness is independent across ranks
        torch.manual_seed(epoch_seed(self.cfg.seed, self.epoch) + self.dist.rank)
        self.model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for step, (x, y) in enumerate(
            self._loader(self.data.train, shuffle=True, epoch=self.epoch), 1
        ):
            x, y = x.to(self.device), y.to(self.device)
            logits = self._net(x)  # (N, classes)
            loss = self.loss_fn(logits, y)
            local = float(loss.detach())
            value = self._step_loss(loss)
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"loss is {value} at epoch {self.epoch + 1}, step {step}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            add_l1_gradients(self.optimizer)  # no-op unless cfg.penalty == "l1"
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += local * y.numel()
            correct += int((logits.detach().argmax(dim=1) == y).sum())
            seen += y.numel()
            for cb in self.callbacks:
                cb.on_step_end(self, step, value)

        if self.dist.enabled:
            broadcast_buffers(self.model)
            loss_sum, total_correct, total_seen = all_reduce_sum(
                [loss_sum, correct, seen], self.device
            )
            train_acc = total_correct / total_seen
        else:
            total_seen, train_acc = seen, correct / seen
        scalars: dict[str, float] = {
            "train_loss": loss_sum / total_seen,
            "train_acc": train_acc,
            "lr": float(self.scheduler.get_last_lr()[0]),
        }
        for split, dataset in (("val", self.data.val), ("test", self.data.test)):
            if dataset is None:
                continue
            result = self._evaluate(dataset)
            scalars.update({f"{split}_{k}": v for k, v in result.items()})
        acc = self.measure()
        scalars.update(
            {
                "sparsity": acc.sparsity,
                "nonzero": float(acc.total_nonzero),
                "params": float(acc.total_params),
                "flops": float(acc.sparse_flops),
                "dense_flops": float(acc.dense_flops),
                "epoch_seconds": time.perf_counter() - started,
            }
        )
        layers = {
            r.name: LayerSnapshot(r.sparsity, r.threshold, r.nonzero, r.params) for r in acc.rows
        }
        return EpochMetrics(epoch=self.epoch + 1, scalars=scalars, layers=layers)

    def _eval_batches(self, dataset: Dataset[Any]) -> DataLoader[tuple[Tensor, Tensor]]:
        return self._loader(dataset, shuffle=False, epoch=0)

    def _evaluate(self, dataset: Dataset[Any]) -> dict[str, float]:
        """Loss/accuracy on ``dataset``; under ``torch.distributed`` each rank evaluates its shard
        with the plain module and the sums are reduced, so all ranks get the same numbers."""
        sums = evaluation_sums(self.model, self._eval_batches(dataset), self.device, self.top5)
        if self.dist.enabled:
            sums = EvalSums(*all_reduce_sum(sums.as_list(), self.device))
        return sums.metrics(self.top5)
