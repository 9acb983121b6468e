"""The options that build a search spec, shared by ``strsearch search`` and ``strsearch submit``.

:func:`spec_options` adds them to a Typer command: the command declares a ``spec`` parameter
(the spec as a JSON-like dict, not yet validated) and its own options; the decorated function
takes every spec option too and builds the dict the same way for both commands. A ``--spec`` JSON
file gives the base; options given on the command line override its fields. Validation is left to
the caller (``search`` parses it locally, ``submit`` lets the service answer, naming the fields).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError

SPEC_PANEL = "Search spec"


def _spec_template(
    model: Annotated[
        str | None,
        typer.Option(
            help="Registered model name (see `strsearch models`); required unless in --spec.",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Registered dataset (see `strsearch datasets`); required unless in --spec.",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(
            help="Target sparsity, e.g. 0.9; required unless in --spec.", rich_help_panel=SPEC_PANEL
        ),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Accepted |sparsity − target| (default 0.005).", rich_help_panel=SPEC_PANEL
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs per trial (default 30).", rich_help_panel=SPEC_PANEL)
    ] = None,
    max_trials: Annotated[
        int | None, typer.Option(help="Trial budget (default 12).", rich_help_panel=SPEC_PANEL)
    ] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Trials at a time (default 1).", rich_help_panel=SPEC_PANEL)
    ] = None,
    s_init: Annotated[
        list[float] | None,
        typer.Option(help="s_init to search (repeatable; default -5).", rich_help_panel=SPEC_PANEL),
    ] = None,
    lambda_min: Annotated[
        float | None,
        typer.Option(help="Initial λ bracket, low end (default 1e-4).", rich_help_panel=SPEC_PANEL),
    ] = None,
    lambda_max: Annotated[
        float | None,
        typer.Option(help="Initial λ bracket, high end (default 0.1).", rich_help_panel=SPEC_PANEL),
    ] = None,
    cpus_per_trial: Annotated[
        float | None,
        typer.Option(
            help="CPUs per trial (default: the cluster's CPUs shared among the trials that run "
            "at once, at most 4).",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    gpus_per_trial: Annotated[
        float | None,
        typer.Option(help="GPUs per trial (default 0).", rich_help_panel=SPEC_PANEL),
    ] = None,
    workers_per_trial: Annotated[
        int | None,
        typer.Option(
            help="Data-parallel workers per trial (Ray Train; default 1).",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Training seed of every trial (default 0).", rich_help_panel=SPEC_PANEL),
    ] = None,
    early_stopping: Annotated[
        bool | None,
        typer.Option(
            "--early-stopping/--no-early-stopping",
            help="Stop trials that can no longer land in the band (default on).",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help=(
                "Comma-separated methods to compare at the target (a comparison job), e.g. "
                "'str,gmp,erk,dnw'; see `strsearch compare --help`."
            ),
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated training seeds of a comparison (default 0,1,2).",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    budget_file: Annotated[
        Path | None,
        typer.Option(
            help=(
                "Per-layer budget of budget_gmp / budget_dnw: a layer,sparsity .csv or a .json "
                "file, or with --budget-column a paper budget table."
            ),
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    budget_column: Annotated[
        str | None,
        typer.Option(
            help="Column of a paper budget table (e.g. STR, ERK); rows are the model's layers.",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder of a disk dataset (on the machine that trains).",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
    spec_file: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="JSON spec file; options given here override its fields.",
            rich_help_panel=SPEC_PANEL,
        ),
    ] = None,
) -> dict[str, Any]:
    """Merge the options over the ``--spec`` file into one spec dict (not yet validated)."""
    base = _read_spec_file(spec_file) if spec_file else {}
    top = {"model": model, "dataset": dataset, "target_sparsity": target, "tolerance": tolerance}
    base |= {k: v for k, v in top.items() if v is not None}
    if data_root is not None:
        base["data_root"] = str(data_root)
    if methods is not None:
        base["methods"] = _csv_list(methods, "--methods")
    comparison: dict[str, Any] = {
        "seeds": _csv_list(seeds, "--seeds", int) if seeds is not None else None
    }
    if budget_file is not None:
        comparison["budget"] = _read_budget(budget_file, budget_column, base.get("model"))
    elif budget_column is not None:
        raise ValueError("--budget-column needs --budget-file")
    sections: dict[str, dict[str, Any]] = {
        "training": {"epochs": epochs},
        "search": {
            "max_trials": max_trials,
            "parallel_trials": parallel,
            "s_init": s_init or None,
            "lambda_min": lambda_min,
            "lambda_max": lambda_max,
            "seed": seed,
            "early_stopping": early_stopping,
        },
        "comparison": comparison,
        "resources": {
            "cpus_per_trial": cpus_per_trial,
            "gpus_per_trial": gpus_per_trial,
            "workers_per_trial": workers_per_trial,
        },
    }
    for section, values in sections.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            current = base.get(section, {})
            if not isinstance(current, dict):
                raise ValueError(f"invalid search spec: {section}: must be an object")
            base[section] = {**current, **given}
    return base


def _csv_list(text: str, option: str, kind: Callable[[str], Any] = str) -> list[Any]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{option} needs at least one value")
    try:
        return [kind(item) for item in items]
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a comma-separated list of numbers") from None


def _read_budget(path: Path, column: str | None, model: Any) -> dict[str, float]:
    """A budget file's layer → sparsity map; a paper table's column needs the model's layer
    names (its prunable layers in module order, from the model registry)."""
    from str_core.budgets import read_budget, read_paper_budget_table

    if column is None:
        return read_budget(path)
    if not isinstance(model, str):
        raise ValueError("--budget-column needs --model (the table's rows are its layers)")
    from str_core.layers import prunable_layers
    from str_core.models import create_model

    names = [name for name, _ in prunable_layers(create_model(model))]
    return read_paper_budget_table(path, column, names)


def _read_spec_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (the spec's fields)")
    return data


_TEMPLATE = inspect.signature(_spec_template, eval_str=True)
SPEC_OPTION_NAMES = frozenset(_TEMPLATE.parameters)


def validation_message(exc: ValidationError) -> str:
    """``field: message`` for each error of a pydantic validation, joined by ``; ``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())


def build_spec(**options: Any) -> dict[str, Any]:
    """The spec dict from spec options given by name (omitted ones count as not given)."""
    return _spec_template(**options)


def spec_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the spec options; it receives the merged dict as ``spec``.

    The wrapper's signature (what Typer reads) is the spec options followed by ``command``'s own
    parameters other than ``spec``, all keyword-only so their order is free.
    """
    own = inspect.signature(command, eval_str=True).parameters
    if "spec" not in own:
        raise TypeError(f"{command.__name__} must take a `spec` parameter")
    clash = SPEC_OPTION_NAMES & set(own)
    if clash:
        raise TypeError(f"{command.__name__} redefines spec options: {sorted(clash)}")
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in (*_TEMPLATE.parameters.values(), *own.values())
        if p.name != "spec"
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        options = {k: kwargs.pop(k) for k in SPEC_OPTION_NAMES if k in kwargs}
        from strsearch.cli.errors import user_errors

        with user_errors():
            spec = build_spec(**options)
        command(spec=spec, **kwargs)

    wrapper.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
