"""Data-parallel helpers for the trainer: the process's place in a ``torch.distributed`` group,
the shard of an epoch each rank trains on, and sums over ranks.

The caller owns the process group (``torch.distributed.init_process_group``, or a launcher such as
Ray Train or ``torchrun`` that does it); the trainer only detects it. Every rank draws the same
epoch permutation and keeps ``perm[rank::world]``; the permutation is first padded by repeating
its head so that every rank gets the same number of examples, hence the same number of steps
(what ``torch.utils.data.DistributedSampler`` does). Sums are reduced in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in data-parallel training.

    Attributes:
        rank: this process's rank, ``0`` without a process group.
        world_size: number of processes, ``1`` without a process group.
        enabled: whether a process group is initialised (collectives must be called).
    """

    rank: int = 0
    world_size: int = 1
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the rank that writes checkpoints)."""
        return self.rank == 0


def current_context() -> DistContext:
    """The context of the default process group, or a single-process context without one."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), enabled=True)
    return DistContext()


def shard_indices(indices: Sequence[int], rank: int, world_size: int, *, pad: bool) -> list[int]:
    """The part of ``indices`` that ``rank`` of ``world_size`` processes.

    Args:
        indices: the full (already shuffled) order, the same on every rank.
        rank: this rank, in ``[0, world_size)``.
        world_size: number of ranks.
        pad: repeat the head of ``indices`` until its length is a multiple of ``world_size``, so
            every rank gets ``ceil(len / world_size)`` items (training); without padding the
            shards are disjoint and their union is exactly ``indices`` (evaluation).

    Returns:
        ``indices[rank::world_size]`` of the (padded) order.

    Raises:
        ValueError: if ``rank`` is not in ``[0, world_size)``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    order = list(indices)
    if pad and order:
        total = math.ceil(len(order) / world_size) * world_size
        repeats = math.ceil(total / len(order))
        order = (order * repeats)[:total]
    return order[rank::world_size]


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64; every rank gets the same result)."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)  # (len(values),)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on at least one rank (every rank gets the same answer)."""
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)  # (1,)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy every buffer of ``module`` (BN running statistics, …) from rank ``src`` to all ranks.

    ``DistributedDataParallel`` broadcasts buffers at the start of each forward pass, after which
    every rank updates them with its own batch: at the end of an epoch they differ by rank. Rank
    0's are the ones a checkpoint keeps, so everyone takes those.
    """
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)
