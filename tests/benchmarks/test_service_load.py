"""The load benchmark runs end to end on both backends and its loss/duplicate checks can fail."""

from __future__ import annotations

import pytest

from benchmarks import service_load


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_small_run_loses_and_duplicates_nothing(backend: str) -> None:
    results = service_load.run([backend], [1, 8], jobs=12)
    assert [(r.backend, r.concurrency, r.jobs) for r in results] == [
        (backend, 1, 12),
        (backend, 8, 12),
    ]
    for r in results:
        assert r.lost == 0
        assert r.duplicated == 0
        assert 0 < r.p50_ms <= r.p99_ms
        assert r.per_s > 0


def test_main_exits_non_zero_for_an_unknown_backend() -> None:
    with pytest.raises(SystemExit) as exit_info:
        service_load.main(["--backends", "oracle"])
    assert exit_info.value.code == 2


def test_table_row_shows_losses() -> None:
    row = service_load._row(
        service_load.LevelResult("sqlite", 16, 10, 1.0, 10.0, 5.0, 9.0, lost=1, duplicated=2)
    )
    assert row.endswith("| 1 | 2 |")
