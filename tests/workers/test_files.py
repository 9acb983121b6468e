"""Writing a file whole or not at all (workers.files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from workers.files import write_atomically


def test_writes_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.json"
    write_atomically(path, b"one")
    write_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, b"old")
    with pytest.raises(TypeError):
        write_atomically(path, cast(Any, "not bytes"))
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
