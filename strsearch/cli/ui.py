"""``strsearch ui``: where to browse the recorded searches (the MLflow UI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from strsearch.cli.errors import user_errors


def ui(
    root: Annotated[
        Path, typer.Option(help="Folder of the embedded MLflow server (store and artifacts).")
    ] = Path("runs/mlflow"),
    stop: Annotated[bool, typer.Option("--stop", help="Stop the embedded server.")] = False,
) -> None:
    """Print the MLflow UI's address, starting the embedded server if none is configured."""
    from workers.mlflow_server import ensure_server, running_server, stop_server

    with user_errors():
        configured = os.environ.get("MLFLOW_TRACKING_URI")
        if stop:
            server = running_server(root)
            if server is not None:
                stop_server(server)
            print("stopped" if server is not None else f"no embedded server under {root}")
            return
        if configured:
            print(configured)
            return
        print(ensure_server(root).url)
