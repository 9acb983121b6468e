"""Checkpoint files: written atomically, always read with ``weights_only=True``.

A trainer checkpoint holds the model, optimizer and scheduler state, the finished epoch, the metric
history and the training config. Nothing in it is arbitrary pickled Python, so loading a file
from elsewhere cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_FORMAT = "strsearch-trainer"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a trainer checkpoint.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a trainer checkpoint of a known version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a strsearch trainer checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {state.get('version')!r}")
    return state


def load_dense_weights(model: nn.Module, path: str | Path) -> None:
    """Initialise ``model`` (dense or STR) from a dense model's weights.

    ``path`` holds either a plain ``state_dict`` or a trainer checkpoint. STR threshold
    parameters (``*.s``) may be missing from it and keep their ``s_init``; any other missing or
    unexpected key is an error, so a checkpoint of another architecture is refused.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the keys or shapes do not fit ``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dense checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds neither a state_dict nor a trainer checkpoint")
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(".s")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatch {wrong[:5]}"
        )
    model.load_state_dict(state, strict=False)
