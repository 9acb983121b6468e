"""``strsearch search``: find the most accurate STR model at a requested sparsity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from strsearch.cli.errors import user_errors


def search(
    model: Annotated[str, typer.Option(help="Registered model name (see `strsearch models`).")],
    dataset: Annotated[str, typer.Option(help="Registered dataset (see `strsearch datasets`).")],
    target: Annotated[float, typer.Option(help="Target sparsity, e.g. 0.9.")],
    tolerance: Annotated[float, typer.Option(help="Accepted |sparsity − target|.")] = 0.005,
    epochs: Annotated[int | None, typer.Option(help="Epochs per trial (default 30).")] = None,
    max_trials: Annotated[int | None, typer.Option(help="Trial budget (default 12).")] = None,
    parallel: Annotated[int | None, typer.Option(help="Trials at a time (default 2).")] = None,
    s_init: Annotated[
        list[float] | None, typer.Option(help="s_init to search (repeatable; default -5).")
    ] = None,
    lambda_min: Annotated[float | None, typer.Option(help="Initial λ bracket, low end.")] = None,
    lambda_max: Annotated[float | None, typer.Option(help="Initial λ bracket, high end.")] = None,
    cpus_per_trial: Annotated[
        float | None, typer.Option(help="CPUs per trial (default 1).")
    ] = None,
    gpus_per_trial: Annotated[
        float | None, typer.Option(help="GPUs per trial (default 0).")
    ] = None,
    workers_per_trial: Annotated[
        int | None,
        typer.Option(help="Data-parallel workers per trial (Ray Train; default 1)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed of every trial.")] = None,
    early_stopping: Annotated[
        bool | None,
        typer.Option(
            "--early-stopping/--no-early-stopping",
            help="Stop trials that can no longer land in the band (default off).",
        ),
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="Folder of a disk dataset.")] = None,
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="JSON spec file; options given here override its fields."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else local).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Experiment storage (default runs/search); shared storage on clusters."),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over instead of resuming the same spec.")
    ] = False,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow/--no-mlflow",
            help="Record the search in MLflow (default on; see `strsearch ui`).",
        ),
    ] = True,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow server (default: MLFLOW_TRACKING_URI, else the embedded one)."),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(help="MLflow experiment (default: MLFLOW_EXPERIMENT_NAME, else strsearch)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Search weight decay λ (and s_init) with real STR training until a model lands the target."""
    from pydantic import ValidationError

    from strsearch.cli.render import budget_table, make_console
    from strsearch.cli.search_display import SearchDisplay
    from strsearch.spec import SearchSpec

    console = make_console(stderr=json_output)
    with user_errors():
        base: dict[str, Any] = json.loads(spec_file.read_text()) if spec_file else {}
        base |= {"model": model, "dataset": dataset, "target_sparsity": target}
        base["tolerance"] = tolerance
        if data_root is not None:
            base["data_root"] = str(data_root)
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
            "resources": {
                "cpus_per_trial": cpus_per_trial,
                "gpus_per_trial": gpus_per_trial,
                "workers_per_trial": workers_per_trial,
            },
        }
        for section, values in sections.items():
            given = {k: v for k, v in values.items() if v is not None}
            base[section] = {**base.get(section, {}), **given}
        try:
            spec = SearchSpec.parse(base)
        except ValidationError as exc:
            lines = [f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors()]
            raise ValueError("invalid search spec: " + "; ".join(lines)) from None

        from workers import check_spec, run_search
        from workers.tracking import TrackingSettings

        check_spec(spec)
        tracking = TrackingSettings(
            enabled=mlflow, tracking_uri=tracking_uri, experiment=experiment
        )
        display = SearchDisplay(
            console,
            target=spec.target_sparsity,
            tolerance=spec.tolerance,
            max_trials=spec.search.max_trials,
            epochs=spec.training.epochs,
        )
        with display:
            result = run_search(
                spec,
                storage_path=storage,
                address=address,
                resume=not fresh,
                listener=display,
                tracking=tracking,
            )

    if json_output:
        print(json.dumps(result.to_dict(), indent=2))
        return
    console.print()
    best = result.best
    if result.reached and best is not None:
        console.print(budget_table(best.budget, best.thresholds, "per-layer budget of the best"))
        console.print(
            f"[bold green]landed[/]: λ={best.weight_decay:.4g}, s_init={best.s_init:g} → "
            f"sparsity {best.sparsity:.2%}, val acc {best.val_acc:.2%}, "
            f"test acc {best.test_acc:.2%} ({len(result.trials)} trials, "
            f"{result.total_epochs} epochs)",
            highlight=False,
        )
    else:
        closest = (
            "" if best is None else f"; closest: λ={best.weight_decay:.4g} → {best.sparsity:.2%}"
        )
        console.print(
            f"[bold yellow]not reached[/] within {len(result.trials)} trials{closest}",
            highlight=False,
        )
    console.print(f"experiment: {result.experiment_path}", highlight=False)
    if result.mlflow_run_url:
        console.print(f"MLflow run: {result.mlflow_run_url}", highlight=False)
    if result.registered_model:
        console.print(f"registered model: {result.registered_model}", highlight=False)
