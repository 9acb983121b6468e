"""Checkpoint files are written atomically and never unpickle arbitrary objects."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from str_core.train import load_checkpoint, load_dense_weights, save_checkpoint

from .conftest import TinyNet


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_round_trip_and_format_checks(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "sub" / "c.pt", {"epoch": 3, "w": torch.ones(2)})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert not list(path.parent.glob(".*tmp*"))
    torch.save({"epoch": 1}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a strsearch trainer checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "strsearch-trainer", "version": 1, "x": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        load_dense_weights(TinyNet(), path)
