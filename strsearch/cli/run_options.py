"""The commands that run a job here (``search``, ``compare``): their own options (where Ray and
the experiment storage are, whether to resume, how to record it in MLflow, ``--json``) and
:func:`run_here`, which runs the job with a live trials table and prints its result."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from strsearch.cli.errors import user_errors
from strsearch.cli.spec_options import validation_message

Address = Annotated[
    str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else local).")
]
Storage = Annotated[
    str | None,
    typer.Option(help="Experiment storage (default runs/search); shared storage on clusters."),
]
Fresh = Annotated[
    bool, typer.Option("--fresh", help="Start over instead of resuming the same spec.")
]
Mlflow = Annotated[
    bool,
    typer.Option(
        "--mlflow/--no-mlflow", help="Record it in MLflow (default on; see `strsearch ui`)."
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(help="MLflow server (default: MLFLOW_TRACKING_URI, else the embedded one)."),
]
Experiment = Annotated[
    str | None,
    typer.Option(help="MLflow experiment (default: MLFLOW_EXPERIMENT_NAME, else strsearch)."),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def run_here(
    spec: dict[str, Any],
    *,
    kind: str,
    address: str | None,
    storage: str | None,
    fresh: bool,
    mlflow: bool,
    tracking_uri: str | None,
    experiment: str | None,
    json_output: bool,
) -> None:
    """Validate ``spec`` (a ``kind`` of job: search or comparison, named in errors), run it on
    Ray with a live trials table, then print its result (as JSON with ``json_output``)."""
    from pydantic import ValidationError

    from strsearch.cli.render import make_console
    from strsearch.cli.result_view import print_result
    from strsearch.cli.search_display import SearchDisplay
    from strsearch.spec import SearchSpec

    console = make_console(stderr=json_output)
    with user_errors():
        try:
            job = SearchSpec.parse(spec)
        except ValidationError as exc:
            raise ValueError(f"invalid {kind} spec: {validation_message(exc)}") from None

        from workers.compare import check_comparison, run_job
        from workers.tracking import TrackingSettings

        check_comparison(job)
        tracking = TrackingSettings(
            enabled=mlflow, tracking_uri=tracking_uri, experiment=experiment
        )
        display = SearchDisplay(
            console,
            target=job.target_sparsity,
            tolerance=job.tolerance,
            max_trials=job.trial_budget(),
            epochs=job.training.epochs,
        )
        with display:
            result = run_job(
                job,
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
    print_result(console, result.to_dict())
