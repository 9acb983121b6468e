"""Data-parallel training: two gloo processes on 127.0.0.1 against one process with the same
global batch, plus the sharding helpers."""

from __future__ import annotations

import dataclasses
import gc
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.multiprocessing.spawn import spawn
from torch.utils.data import DataLoader, TensorDataset

from str_core.config import STRConfig, TrainConfig
from str_core.layers import sparsify
from str_core.train import (
    LAST_CHECKPOINT,
    Callback,
    EpochMetrics,
    Trainer,
    epoch_permutation,
    epoch_seed,
    shard_indices,
)

from .conftest import TinyNet, make_blobs

WORLD = 2
Ranks = tuple[dict[str, Any], dict[str, Any], Path]  # rank 0's results, rank 1's, their folder
# 64 training examples, global batch 32: 2 steps per epoch, 16 examples per rank and step
CFG = TrainConfig(epochs=2, batch_size=32, lr=0.05, weight_decay=1e-3)


class PlainNet(nn.Module):
    """No batch norm, so one process and two ranks compute the same averaged gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(torch.relu(self.conv(x)).flatten(1))  # (N, 3)
        return logits


def _plain_str_net() -> nn.Module:
    torch.manual_seed(0)
    net = PlainNet()
    sparsify(net, STRConfig(s_init=-3.0))
    return net


class Recorder(Callback):
    def __init__(self, stop_rank: int | None = None) -> None:
        self.losses: list[float] = []
        self.metrics: list[EpochMetrics] = []
        self.stop_rank = stop_rank

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self.losses.append(loss)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.metrics.append(metrics)
        if trainer.rank == self.stop_rank:
            trainer.request_stop()


def _scalars(metrics: list[EpochMetrics]) -> list[dict[str, float]]:
    return [{k: v for k, v in m.scalars.items() if k != "epoch_seconds"} for m in metrics]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runs(rank: int, out: Path) -> dict[str, Any]:
    """The runs of one rank (its trainers, and their DDP wrappers, die when this returns)."""
    data = make_blobs()
    results: dict[str, Any] = {}

    rec = Recorder()
    trainer = Trainer(
        _plain_str_net(), CFG, data, callbacks=[rec], checkpoint_dir=out / f"ckpt{rank}"
    )
    result = trainer.fit()
    results["plain"] = {
        "state": trainer.model.state_dict(),
        "scalars": _scalars(rec.metrics),
        "losses": rec.losses,
        "checkpoint": result.checkpoint,
        "world_size": trainer.world_size,
        "steps_per_epoch": trainer.steps_per_epoch,
    }

    # every rank resumes from rank 0's checkpoint, copied into its own folder
    resume_dir = out / f"resume{rank}"
    resume_dir.mkdir()
    shutil.copy(out / "ckpt0" / LAST_CHECKPOINT, resume_dir / LAST_CHECKPOINT)
    resumed = Trainer(
        _plain_str_net(), dataclasses.replace(CFG, epochs=3), data, checkpoint_dir=resume_dir
    )
    history = resumed.fit(resume=True).history
    results["resumed"] = {"state": resumed.model.state_dict(), "epochs": len(history)}

    # batch norm: buffers are taken from rank 0; a stop asked by rank 1 alone stops both
    torch.manual_seed(0)
    bn_rec = Recorder(stop_rank=1)
    bn = Trainer(TinyNet(), dataclasses.replace(CFG, epochs=3), data, callbacks=[bn_rec])
    bn.fit()
    results["bn"] = {"state": bn.model.state_dict(), "epochs": len(bn_rec.metrics)}

    try:
        Trainer(_plain_str_net(), dataclasses.replace(CFG, batch_size=33), data)
    except ValueError as exc:
        results["indivisible"] = str(exc)
    return results


def _rank_main(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank: :func:`_runs`, results saved to ``out_dir/rank{rank}.pt``."""
    out = Path(out_dir)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.save(_runs(rank, out), out / f"rank{rank}.pt")
    finally:
        # no DDP wrapper may outlive the group, and rank 0 (the store) must not leave first:
        # otherwise gloo's threads can abort the process on exit
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> Ranks:
    out = tmp_path_factory.mktemp("ddp")
    spawn(_rank_main, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)  # type: ignore[no-untyped-call]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD))
    return r0, r1, out


def _single_process(epochs: int) -> tuple[dict[str, torch.Tensor], Recorder]:
    rec = Recorder()
    net = _plain_str_net()
    Trainer(net, dataclasses.replace(CFG, epochs=epochs), make_blobs(), callbacks=[rec]).fit()
    return net.state_dict(), rec


def _assert_states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_ranks_end_with_identical_weights(ranks: Ranks) -> None:
    r0, r1, _ = ranks
    assert r0["plain"]["world_size"] == r1["plain"]["world_size"] == WORLD
    assert r0["plain"]["steps_per_epoch"] == 2  # 32 examples per rank, 16 per step
    _assert_states_equal(r0["plain"]["state"], r1["plain"]["state"])
    _assert_states_equal(r0["bn"]["state"], r1["bn"]["state"])  # BN running stats included


def test_only_rank0_writes_the_checkpoint(
    ranks: Ranks,
) -> None:
    r0, r1, out = ranks
    assert r0["plain"]["checkpoint"] == out / "ckpt0" / LAST_CHECKPOINT
    assert r1["plain"]["checkpoint"] is None
    assert not (out / "ckpt1" / LAST_CHECKPOINT).exists()
    saved = torch.load(out / "ckpt0" / LAST_CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 2
    _assert_states_equal(saved["model"], r0["plain"]["state"])


def test_metrics_are_the_same_on_every_rank(
    ranks: Ranks,
) -> None:
    r0, r1, _ = ranks
    assert r0["plain"]["scalars"] == r1["plain"]["scalars"]
    assert r0["plain"]["losses"] == r1["plain"]["losses"]
    assert len(r0["plain"]["losses"]) == 4


def test_two_ranks_match_one_process_with_the_same_global_batch(
    ranks: Ranks,
) -> None:
    # same permutation and global batches, gradients averaged over equal halves: the only
    # differences are float summation orders
    r0, _, _ = ranks
    state, rec = _single_process(epochs=2)
    for key, value in state.items():
        torch.testing.assert_close(r0["plain"]["state"][key], value, rtol=1e-4, atol=1e-6)
    assert r0["plain"]["losses"] == pytest.approx(rec.losses, rel=1e-5)
    for dp, single in zip(r0["plain"]["scalars"], _scalars(rec.metrics), strict=True):
        assert dp.keys() == single.keys()
        for key in single:
            assert dp[key] == pytest.approx(single[key], rel=1e-5, abs=1e-7), key
    # the run really moved: a model that did not train would match trivially
    assert not torch.equal(state["fc.weight"], _plain_str_net().state_dict()["fc.weight"])


def test_every_rank_resumes_from_the_checkpoint(ranks: Ranks, tmp_path: Path) -> None:
    r0, r1, _ = ranks
    assert r0["resumed"]["epochs"] == r1["resumed"]["epochs"] == 3
    _assert_states_equal(r0["resumed"]["state"], r1["resumed"]["state"])
    # the same two steps in one process: 2 epochs, then 1 more from the checkpoint
    Trainer(_plain_str_net(), CFG, make_blobs(), checkpoint_dir=tmp_path).fit()
    net = _plain_str_net()
    more = dataclasses.replace(CFG, epochs=3)
    Trainer(net, more, make_blobs(), checkpoint_dir=tmp_path).fit(resume=True)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(r0["resumed"]["state"][key], value, rtol=1e-4, atol=1e-6)


def test_a_stop_on_one_rank_stops_all(ranks: Ranks) -> None:
    r0, r1, _ = ranks
    assert r0["bn"]["epochs"] == r1["bn"]["epochs"] == 1


def test_global_batch_must_divide_by_the_world_size(
    ranks: Ranks,
) -> None:
    r0, r1, _ = ranks
    for r in (r0, r1):
        assert "batch_size 33" in r["indivisible"] and "world size 2" in r["indivisible"]


@pytest.mark.parametrize("n", [1, 5, 6, 7])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_cover_the_order_with_equal_lengths(n: int, world: int) -> None:
    order = list(range(100, 100 + n))
    padded = [shard_indices(order, r, world, pad=True) for r in range(world)]
    assert len({len(s) for s in padded}) == 1  # same number of steps on every rank
    assert len(padded[0]) == -(-n // world)
    assert set().union(*padded) == set(order)
    exact = [shard_indices(order, r, world, pad=False) for r in range(world)]
    assert sorted(i for s in exact for i in s) == order  # disjoint, nothing added
    assert exact[0] == order[::world]


def test_shard_rejects_a_rank_outside_the_world() -> None:
    with pytest.raises(ValueError, match="outside"):
        shard_indices([1, 2], 2, 2, pad=False)


def test_epoch_permutation_is_what_a_seeded_loader_draws() -> None:
    data = TensorDataset(torch.arange(50))
    for epoch in (0, 3):
        gen = torch.Generator().manual_seed(epoch_seed(7, epoch))
        loader = DataLoader(data, batch_size=50, shuffle=True, generator=gen)
        drawn = next(iter(loader))[0].tolist()
        assert epoch_permutation(7, epoch, 50) == drawn
    assert epoch_permutation(7, 0, 50) != epoch_permutation(7, 1, 50)
