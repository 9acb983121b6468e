"""``strsearch search``: find the most accurate STR model at a requested sparsity."""

from __future__ import annotations

from typing import Any

from strsearch.cli import run_options
from strsearch.cli.spec_options import spec_options


@spec_options
def search(
    spec: dict[str, Any],
    address: run_options.Address = None,
    storage: run_options.Storage = None,
    fresh: run_options.Fresh = False,
    mlflow: run_options.Mlflow = True,
    tracking_uri: run_options.TrackingUri = None,
    experiment: run_options.Experiment = None,
    json_output: run_options.JsonOutput = False,
) -> None:
    """Search weight decay λ (and s_init) with real STR training until a model lands the target."""
    run_options.run_here(
        spec,
        kind="search",
        address=address,
        storage=storage,
        fresh=fresh,
        mlflow=mlflow,
        tracking_uri=tracking_uri,
        experiment=experiment,
        json_output=json_output,
    )
