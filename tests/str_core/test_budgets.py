"""Tests for str_core.budgets: budget files and the paper's budget table."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from str_core.budgets import (
    read_budget,
    read_paper_budget_table,
    validate_budget,
    write_budget,
)
from str_core.layers import prunable_layers
from str_core.metrics import Accounting, account_with_budget
from str_core.models import create_model, get_model_info

REPO = Path(__file__).resolve().parents[2]
PAPER_TABLE = REPO / "tests" / "data" / "SparsityDistributions_90_ResNet50.csv"
"""Byte-for-byte copy of the STR paper's released ResNet-50 budget table (90% sparsity)."""
SHARED_TABLE = REPO / ".." / "shared" / "budgets" / "SparsityDistributions_90_ResNet50.csv"

BUDGET = {"conv1": 0.0, "layer1.0.conv1": 1 / 3, "layer1.0.downsample.0": 0.9, "fc": 1.0}


@pytest.mark.parametrize("suffix", [".json", ".csv", ".JSON"])
def test_round_trip_is_exact_and_ordered(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"budget{suffix}"
    write_budget(path, BUDGET)
    back = read_budget(path)
    assert back == BUDGET
    assert list(back) == list(BUDGET)
    assert all(type(v) is float for v in back.values())


def test_file_formats_are_the_documented_ones(tmp_path: Path) -> None:
    write_budget(tmp_path / "b.csv", {"conv1": 0.5, "fc": 0.25})
    assert (tmp_path / "b.csv").read_text() == "layer,sparsity\nconv1,0.5\nfc,0.25\n"
    (tmp_path / "c.json").write_text('{"conv1": 0.5, "fc": 1}')
    assert read_budget(tmp_path / "c.json") == {"conv1": 0.5, "fc": 1.0}


def test_csv_reader_accepts_bom_crlf_spaces_and_capitalised_header(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b"\xef\xbb\xbfLayer, Sparsity\r\nconv1, 0.5\r\n\r\nfc,1e-1\r\n")
    assert read_budget(path) == {"conv1": 0.5, "fc": 0.1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1.5}', r"\[0, 1\]"),
        ('{"a": -0.1}', r"\[0, 1\]"),
        ('{"a": NaN}', r"\[0, 1\]"),
        ('{"a": "0.5"}', "not a number"),
        ('{"a": true}', "not a number"),
        ('{"a": null}', "not a number"),
        ('{"a": 0.5, "a": 0.6}', "duplicate layer 'a'"),
        ('{"": 0.5}', "non-empty"),
        ("[0.5]", "JSON object"),
        ("{not json", "Expecting"),
    ],
)
def test_bad_json_content(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_budget(path)
    assert "bad.json" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("layer,sparsity\na,1.5\n", r"\[0, 1\]"),
        ("layer,sparsity\na,inf\n", r"\[0, 1\]"),
        ("layer,sparsity\na,90%\n", "not a number"),
        ("layer,sparsity\na,\n", "not a number"),
        ("layer,sparsity\na,0.1\na,0.2\n", "row 3: duplicate layer 'a'"),
        ("layer,sparsity\na,0.1,0.2\n", "row 2: expected 2 fields"),
        ("layer,sparsity\n,0.1\n", "empty layer name"),
        ("name,value\na,0.1\n", "header"),
        ("", "empty file"),
        ("Layer,STR,Uniform\n1,59.80%,90.00%\n", "read_paper_budget_table"),
    ],
)
def test_bad_csv_content(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_budget(path)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_budget(tmp_path / "nope.json")
    (tmp_path / "b.txt").write_text("{}")
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        read_budget(tmp_path / "b.txt")
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        write_budget(tmp_path / "b.yaml", BUDGET)


def test_write_refuses_invalid_budgets_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_budget(path, {"a": 2.0})
    assert not path.exists()


def test_validate_budget_converts_ints() -> None:
    assert validate_budget({"a": 1, "b": 0}) == {"a": 1.0, "b": 0.0}
    with pytest.raises(ValueError, match="non-empty"):
        validate_budget({1: 0.5})  # type: ignore[dict-item]


# --- the paper's budget table ---------------------------------------------------------------------


def test_paper_table_copy_is_byte_identical_to_shared_file() -> None:
    data = PAPER_TABLE.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfLayer,STR,Uniform,ERK,SNFS,VD,GS\r\n")
    if not SHARED_TABLE.exists():
        pytest.skip("no shared/ folder beside the repository")
    assert data == SHARED_TABLE.read_bytes()


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    return create_model("resnet50")


@pytest.fixture(scope="module")
def names(resnet50: nn.Module) -> list[str]:
    return [name for name, _ in prunable_layers(resnet50)]


def test_paper_table_maps_rows_to_layers_in_module_order(names: list[str]) -> None:
    budget = read_paper_budget_table(PAPER_TABLE, "STR", names)
    assert list(budget) == names
    assert len(budget) == 54
    assert budget["conv1"] == pytest.approx(0.598)
    assert budget["layer1.0.downsample.0"] == pytest.approx(0.8334)  # row 5
    assert budget["fc"] == pytest.approx(0.645)
    erk = read_paper_budget_table(PAPER_TABLE, "erk", names)  # case-insensitive
    assert erk["layer1.0.conv1"] == 0.0
    assert set(read_paper_budget_table(PAPER_TABLE, "Uniform", names).values()) == {0.9}


def test_paper_table_round_trips_through_budget_files(tmp_path: Path, names: list[str]) -> None:
    budget = read_paper_budget_table(PAPER_TABLE, "GS", names)
    write_budget(tmp_path / "gs.csv", budget)
    assert read_budget(tmp_path / "gs.csv") == budget


def test_paper_table_errors(tmp_path: Path, names: list[str]) -> None:
    with pytest.raises(ValueError, match=r"unknown method 'RigL'.*'STR', 'Uniform', 'ERK'"):
        read_paper_budget_table(PAPER_TABLE, "RigL", names)
    with pytest.raises(ValueError, match="54 layer rows but 53 layer names"):
        read_paper_budget_table(PAPER_TABLE, "STR", names[:-1])
    with pytest.raises(ValueError, match="duplicates"):
        read_paper_budget_table(PAPER_TABLE, "STR", [*names[:-1], names[0]])
    with pytest.raises(FileNotFoundError):
        read_paper_budget_table(tmp_path / "nope.csv", "STR", names)
    bad = tmp_path / "bad.csv"
    bad.write_text("Layer,STR\n1,50%\n3,60%\n")
    with pytest.raises(ValueError, match="row 2 is malformed or misnumbered"):
        read_paper_budget_table(bad, "STR", ["a", "b"])
    bad.write_text("Layer,STR\n1,50%\n2,160%\n")
    with pytest.raises(ValueError, match=r"row 2: .*\[0, 1\]"):
        read_paper_budget_table(bad, "STR", ["a", "b"])
    bad.write_text("Layer,STR\n1,50%\n2,lots\n")
    with pytest.raises(ValueError, match=r"row 2: .*not a number"):
        read_paper_budget_table(bad, "STR", ["a", "b"])
    bad.write_text("Name,STR\n1,50%\n")
    with pytest.raises(ValueError, match="header"):
        read_paper_budget_table(bad, "STR", ["a"])


@pytest.fixture(scope="module")
def paper_tables(resnet50: nn.Module, names: list[str]) -> dict[str, Accounting]:
    shape = get_model_info("resnet50").input_shape
    budgets = {m: read_paper_budget_table(PAPER_TABLE, m, names) for m in ("STR", "Uniform", "ERK")}
    str_table = account_with_budget(resnet50, shape, budgets["STR"])  # the one forward pass
    return {method: str_table.with_budget(budget) for method, budget in budgets.items()}


@pytest.mark.parametrize(("method", "mflops"), [("STR", 343), ("Uniform", 409), ("ERK", 991)])
def test_paper_budget_flops(paper_tables: dict[str, Accounting], method: str, mflops: int) -> None:
    table = paper_tables[method]
    assert table.pool_flops == 100_352
    assert table.sparse_flops == pytest.approx(mflops * 1e6, rel=0.01)
    assert table.dense_flops == 4_089_284_608


def test_paper_str_budget_overall_sparsity(paper_tables: dict[str, Accounting]) -> None:
    # the paper's 90.23%-sparse STR ResNet-50
    assert paper_tables["STR"].sparsity == pytest.approx(0.9023, abs=1e-4)
    assert paper_tables["Uniform"].sparsity == pytest.approx(0.9, abs=1e-6)
