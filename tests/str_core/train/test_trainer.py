"""The trainer: events, checkpoints, exact resume, divergence, and real STR training on digits."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from str_core.config import DataConfig, STRConfig, TrainConfig
from str_core.data import DatasetSplits
from str_core.layers import sparsify
from str_core.train import (
    Callback,
    EpochMetrics,
    Trainer,
    TrainingDivergedError,
    build_run,
    load_checkpoint,
)

from .conftest import TinyNet


class Recorder(Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[str] = []
        self.metrics: list[EpochMetrics] = []
        self.stop_after = stop_after

    def on_train_start(self, trainer: Trainer) -> None:
        self.events.append("start")

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self.events.append(f"step{step}")

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.events.append(f"epoch{metrics.epoch}")
        self.metrics.append(metrics)
        if self.stop_after is not None and metrics.epoch >= self.stop_after:
            trainer.request_stop()

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        self.events.append("end")


def test_events_and_metrics(tiny_net: TinyNet, blobs: DatasetSplits, tmp_path: Path) -> None:
    sparsify(tiny_net, STRConfig(s_init=-3.0))
    rec = Recorder()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, weight_decay=1e-3)
    result = Trainer(tiny_net, cfg, blobs, callbacks=[rec], checkpoint_dir=tmp_path).fit()
    assert rec.events == ["start", "step1", "step2", "epoch1", "step1", "step2", "epoch2", "end"]
    m = rec.metrics[-1]
    for key in (
        "train_loss",
        "train_acc",
        "lr",
        "val_loss",
        "val_acc",
        "test_acc",
        "sparsity",
        "nonzero",
        "params",
        "flops",
        "dense_flops",
        "epoch_seconds",
    ):
        assert key in m.scalars, key
    assert "val_top5" not in m.scalars  # 3 classes: top-5 is meaningless
    assert list(m.layers) == ["conv", "fc"]
    assert m.layers["conv"].threshold == pytest.approx(
        float(torch.sigmoid(tiny_net.conv.s.detach()))
    )
    assert m.scalars["params"] == 4 * 9 + 3 * 64
    assert m.scalars["flops"] <= m.scalars["dense_flops"]
    flat = m.flat()
    assert flat["sparsity/conv"] == m.layers["conv"].sparsity and "threshold/fc" in flat
    assert EpochMetrics.from_dict(m.to_dict()) == m
    assert result.final == m and result.accounting.sparsity == pytest.approx(m.scalars["sparsity"])
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_resume_ends_with_the_same_weights(blobs: DatasetSplits, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, weight_decay=5e-3, warmup_epochs=1)

    def fresh() -> TinyNet:
        torch.manual_seed(1)
        return sparsify(TinyNet(), STRConfig(s_init=-3.0))  # type: ignore[return-value]

    straight = Trainer(fresh(), cfg, blobs).fit()
    reference = straight.history

    first = Trainer(
        fresh(), cfg, blobs, callbacks=[Recorder(stop_after=2)], checkpoint_dir=tmp_path
    )
    first.fit()
    assert first.epoch == 2
    resumed_model = fresh()
    rec = Recorder()
    second = Trainer(resumed_model, cfg, blobs, callbacks=[rec], checkpoint_dir=tmp_path)
    result = second.fit(resume=True)
    assert [m.epoch for m in rec.metrics] == [3, 4]  # only the missing epochs ran
    assert [m.epoch for m in result.history] == [1, 2, 3, 4]
    straight_model = fresh()
    Trainer(straight_model, cfg, blobs).fit()
    for (name, a), (_, b) in zip(
        straight_model.state_dict().items(), resumed_model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert result.final.scalars["sparsity"] == reference[-1].scalars["sparsity"]


def test_divergence_is_reported(tiny_net: TinyNet, blobs: DatasetSplits) -> None:
    x, y = blobs.train[:]  # type: ignore[index]
    x = x.clone()
    x[0, 0, 0, 0] = float("nan")
    bad = DatasetSplits("bad", TensorDataset(x, y), None, blobs.test, 3, (1, 4, 4))
    with pytest.raises(TrainingDivergedError, match="loss is nan"):
        Trainer(tiny_net, TrainConfig(epochs=1, batch_size=64), bad).fit()


def test_start_from_dense_checkpoint(tmp_path: Path) -> None:
    data_cfg = DataConfig(name="digits")
    cfg = TrainConfig(epochs=1, seed=3)
    dense = build_run("digits_mlp", data_cfg, cfg, None).model
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    run = build_run(
        "digits_mlp", data_cfg, cfg, STRConfig(s_init=-1e4), init_checkpoint=tmp_path / "dense.pt"
    )
    x = torch.randn(4, 1, 8, 8)
    dense.eval()
    run.model.eval()
    torch.testing.assert_close(run.model(x), dense(x))
    other = copy.deepcopy(dense.state_dict())
    other.pop(next(iter(other)))
    torch.save(other, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="does not fit the model"):
        build_run("digits_mlp", data_cfg, cfg, None, init_checkpoint=tmp_path / "broken.pt")


def test_model_and_dataset_mismatch_is_explained() -> None:
    with pytest.raises(ValueError, match="takes inputs shaped"):
        build_run("mnist1d_mlp", DataConfig(name="digits"), TrainConfig(), None)


@pytest.mark.slow
def test_sparsity_rises_with_weight_decay_on_digits() -> None:
    """Real STR training: λ steers the learnt sparsity (DESIGN.md §3b)."""
    data_cfg = DataConfig(name="digits")
    finals = []
    for wd in (0.0, 5e-3, 2e-2):
        cfg = TrainConfig(epochs=8, batch_size=128, lr=0.1, weight_decay=wd, seed=0)
        run = build_run("digits_cnn", data_cfg, cfg, STRConfig(s_init=-5.0))
        result = Trainer(run.model, cfg, run.data).fit()
        finals.append(result.final.scalars)
    sparsities = [f["sparsity"] for f in finals]
    assert sparsities[0] < sparsities[1] < sparsities[2], sparsities
    assert sparsities[2] - sparsities[0] > 0.3, sparsities
    assert all(f["test_acc"] > 0.85 for f in finals), finals


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_like_on_cpu(blobs: DatasetSplits) -> None:
    results = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = sparsify(TinyNet(), STRConfig(s_init=-3.0))
        cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, weight_decay=1e-3, device=device)
        results[device] = Trainer(model, cfg, blobs).fit().final.scalars
        assert all(p.device.type == device for p in model.parameters())
    assert results["cuda"]["train_loss"] == pytest.approx(results["cpu"]["train_loss"], rel=1e-3)
