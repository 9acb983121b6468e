"""Per-layer sparsity budgets: ``{layer_name: sparsity}`` with sparsities in ``[0, 1]``.

Layer names are ``model.named_modules()`` keys of prunable layers (``"conv1"``,
``"layer1.0.downsample.0"``, ``"fc"``), so a budget applies to any model with those names; see
:func:`str_core.metrics.account_with_budget` for the FLOPs a budget implies.

Two file formats, chosen by suffix:

* ``.json``: one object, ``{"conv1": 0.598, "layer1.0.conv1": 0.8328, ...}``.
* ``.csv``: header ``layer,sparsity``, then one row per layer (``conv1,0.598``).

:func:`read_paper_budget_table` reads the STR paper's released budget table (arXiv 2002.03231;
``SparsityDistributions_90_ResNet50.csv``): a ``Layer,<method>,...`` header, rows numbered 1..N in
module order and percentages such as ``59.80%``; row ``i`` is the ``i``-th prunable layer.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

Budget = dict[str, float]
"""Layer name -> sparsity in ``[0, 1]``."""

PathLike = str | os.PathLike[str]

_CSV_HEADER = ("layer", "sparsity")


def validate_budget(budget: Mapping[str, object]) -> Budget:
    """Check names and values of a budget and return it as a plain ``dict[str, float]``.

    Raises:
        ValueError: on an empty or non-string layer name, a value that is not a real number
            (booleans and strings included), or a value outside ``[0, 1]``.
    """
    out: Budget = {}
    for name, value in budget.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"layer names must be non-empty strings, got {name!r}")
        out[name] = _check_value(name, value)
    return out


def _check_value(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"sparsity of layer {name!r} is not a number: {value!r}")
    number = float(value)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"sparsity of layer {name!r} must be in [0, 1], got {value!r}")
    return number


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise ValueError(f"budget file must end in .json or .csv, got {path.name!r}")
    return suffix


def read_budget(path: PathLike) -> Budget:
    """Read a budget from a ``.json`` or ``.csv`` file (see the module docstring).

    Args:
        path: the file; its suffix picks the format.

    Returns:
        Layer name -> sparsity, in file order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: on an unknown suffix, malformed content, a duplicate layer, or a value that
            is not a number in ``[0, 1]``; the message names the file.
    """
    path = Path(path)
    suffix = _suffix(path)
    text = path.read_text(encoding="utf-8-sig")
    try:
        return _parse_json(text) if suffix == ".json" else _parse_csv(text)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def _parse_json(text: str) -> Budget:
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                raise ValueError(f"duplicate layer {key!r}")
            seen[key] = value
        return seen

    data = json.loads(text, object_pairs_hook=no_duplicates)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of layer -> sparsity, got {type(data).__name__}")
    return validate_budget(data)


def _parse_csv(text: str) -> Budget:
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        raise ValueError("empty file; expected the header 'layer,sparsity'")
    header = tuple(cell.strip().lower() for cell in rows[0])
    if header != _CSV_HEADER:
        hint = ""
        if header and header[0] == "layer" and len(header) > 2:
            hint = " (a paper budget table? use read_paper_budget_table)"
        raise ValueError(f"expected the header 'layer,sparsity', got {','.join(rows[0])!r}{hint}")
    budget: Budget = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise ValueError(f"row {line}: expected 2 fields, got {len(row)}: {row}")
        name, raw = row[0].strip(), row[1].strip()
        if name in budget:
            raise ValueError(f"row {line}: duplicate layer {name!r}")
        try:
            value: object = float(raw)
        except ValueError:
            value = raw
        if not name:
            raise ValueError(f"row {line}: empty layer name")
        budget[name] = _check_value(name, value)
    return budget


def write_budget(path: PathLike, budget: Mapping[str, float]) -> None:
    """Write a budget as ``.json`` or ``.csv`` (by suffix); floats are written exactly.

    Raises:
        ValueError: on an unknown suffix or an invalid budget (see :func:`validate_budget`).
    """
    path = Path(path)
    suffix = _suffix(path)
    checked = validate_budget(budget)
    if suffix == ".json":
        path.write_text(json.dumps(checked, indent=2) + "\n", encoding="utf-8")
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_HEADER)
    writer.writerows((name, repr(value)) for name, value in checked.items())
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _parse_percent(text: str) -> float:
    """``"59.80%"`` -> 0.598; a plain number is taken as a fraction."""
    text = text.strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100.0
    return float(text)


def read_paper_budget_table(path: PathLike, method: str, layer_names: Sequence[str]) -> Budget:
    """Read one method's column of the paper's budget table and name its rows.

    The table has a header ``Layer,<method>,<method>,...`` (e.g. ``STR,Uniform,ERK,SNFS,VD,GS``),
    rows numbered ``1..N`` and values in percent; a UTF-8 byte-order mark and CRLF line ends are
    accepted. Row ``i`` belongs to ``layer_names[i - 1]``.

    Args:
        path: the table file.
        method: column name; matched case-insensitively.
        layer_names: the model's prunable layers in module order
            (``[n for n, _ in prunable_layers(model)]``).

    Returns:
        Layer name -> sparsity in ``[0, 1]``, in row order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: on an unknown method (the message lists the valid ones), a row count that
            differs from ``len(layer_names)``, rows not numbered 1..N, duplicate layer names, or a
            value that is not a percentage in ``[0, 100]``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows or rows[0][0].strip().lower() != "layer" or len(rows[0]) < 2:
        raise ValueError(f"{path}: expected a header 'Layer,<method>,...'")
    methods = [cell.strip() for cell in rows[0][1:]]
    lowered = [m.lower() for m in methods]
    if method.lower() not in lowered:
        raise ValueError(f"{path}: unknown method {method!r}; valid: {methods}")
    column = lowered.index(method.lower()) + 1
    body = rows[1:]
    if len(body) != len(layer_names):
        raise ValueError(
            f"{path}: {len(body)} layer rows but {len(layer_names)} layer names; the table must "
            "have one row per prunable layer of the model"
        )
    if len(set(layer_names)) != len(layer_names):
        raise ValueError("layer_names has duplicates")
    budget: Budget = {}
    for number, (row, name) in enumerate(zip(body, layer_names, strict=True), start=1):
        if len(row) != len(rows[0]) or row[0].strip() != str(number):
            raise ValueError(f"{path}: row {number} is malformed or misnumbered: {row}")
        try:
            value: object = _parse_percent(row[column])
        except ValueError:
            value = row[column]
        try:
            budget[name] = _check_value(name, value)
        except ValueError as e:
            raise ValueError(f"{path}: row {number}: {e}") from e
    return budget
