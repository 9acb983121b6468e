"""``strsearch budget``: the per-layer table of a model, dense or with a budget file applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from strsearch.cli.errors import user_errors


def budget(
    model: Annotated[str, typer.Option(help="Registered model name (see `strsearch models`).")],
    budget_file: Annotated[
        Path | None,
        typer.Option(
            "--budget",
            help="Budget: JSON {layer: sparsity}, CSV layer,sparsity, or a "
            "paper-style table (with --method).",
        ),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="Column of a paper-style budget table, e.g. STR, ERK.")
    ] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classifier outputs.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Print the per-layer parameters, sparsity and FLOPs of a model and their totals."""
    from str_core.budgets import read_budget, read_paper_budget_table
    from str_core.layers import prunable_layers
    from str_core.metrics import account, account_with_budget
    from str_core.models import create_model, get_model_info
    from strsearch.cli.render import accounting_table, make_console

    with user_errors():
        info = get_model_info(model)
        net = create_model(model, num_classes=num_classes)
        if budget_file is None:
            if method is not None:
                raise ValueError("--method needs --budget")
            acc = account(net, info.input_shape)
            title = f"{model} (dense)"
        else:
            if method is not None:
                names = [n for n, _ in prunable_layers(net)]
                layer_budget = read_paper_budget_table(budget_file, method, names)
            else:
                layer_budget = read_budget(budget_file)
            acc = account_with_budget(net, info.input_shape, layer_budget)
            title = f"{model} with {budget_file.name}" + (f" ({method})" if method else "")
    if json_output:
        print(json.dumps(acc.to_dict(), indent=2))
        return
    make_console().print(accounting_table(acc, title=title))
