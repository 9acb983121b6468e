"""The options of the commands that run an experiment here (``search``, ``compare``): where Ray
and the experiment storage are, whether to resume, how to record it in MLflow, and ``--json``."""

from __future__ import annotations

from typing import Annotated

import typer

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
