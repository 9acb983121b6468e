"""``strsearch search``: find the most accurate STR model at a requested sparsity."""

from __future__ import annotations

import json
from typing import Any

from strsearch.cli import run_options
from strsearch.cli.errors import user_errors
from strsearch.cli.spec_options import spec_options, validation_message


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
    from pydantic import ValidationError

    from strsearch.cli.render import make_console
    from strsearch.cli.result_view import print_result
    from strsearch.cli.search_display import SearchDisplay
    from strsearch.spec import SearchSpec

    console = make_console(stderr=json_output)
    with user_errors():
        try:
            search_spec = SearchSpec.parse(spec)
        except ValidationError as exc:
            raise ValueError(f"invalid search spec: {validation_message(exc)}") from None

        from workers import check_spec, run_search
        from workers.tracking import TrackingSettings

        check_spec(search_spec)
        tracking = TrackingSettings(
            enabled=mlflow, tracking_uri=tracking_uri, experiment=experiment
        )
        display = SearchDisplay(
            console,
            target=search_spec.target_sparsity,
            tolerance=search_spec.tolerance,
            max_trials=search_spec.search.max_trials,
            epochs=search_spec.training.epochs,
        )
        with display:
            result = run_search(
                search_spec,
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
