"""``strsearch compare``: STR against the pruning baselines (and STR's ablations) at one target."""

from __future__ import annotations

import json
from typing import Any

from strsearch.cli import run_options
from strsearch.cli.errors import user_errors
from strsearch.cli.spec_options import spec_options, validation_message


@spec_options
def compare(
    spec: dict[str, Any],
    address: run_options.Address = None,
    storage: run_options.Storage = None,
    fresh: run_options.Fresh = False,
    mlflow: run_options.Mlflow = True,
    tracking_uri: run_options.TrackingUri = None,
    experiment: run_options.Experiment = None,
    json_output: run_options.JsonOutput = False,
) -> None:
    """Train several methods to the same target sparsity with the same recipe and seeds, and
    print one table: sparsity, test accuracy (mean ± std over seeds), MACs, nonzero weights.

    Methods (--methods, default str,gmp,global_magnitude,erk,dnw,str_to_gmp): str (λ searched),
    its ablations str_l1 (L1 penalty), str_exp (g = exp), str_channel (a threshold per channel);
    gmp (gradual magnitude pruning, uniform), global_magnitude, erk (GMP with ERK budgets), dnw
    (top-k with a straight-through gradient), str_to_gmp / str_to_dnw (the budget STR learnt),
    budget_gmp / budget_dnw (the --budget-file budget).
    """
    from pydantic import ValidationError

    from strsearch.cli.render import make_console
    from strsearch.cli.result_view import print_result
    from strsearch.cli.search_display import SearchDisplay
    from strsearch.spec import DEFAULT_METHODS, SearchSpec

    console = make_console(stderr=json_output)
    with user_errors():
        spec = {"methods": list(DEFAULT_METHODS)} | spec
        try:
            compare_spec = SearchSpec.parse(spec)
        except ValidationError as exc:
            raise ValueError(f"invalid comparison spec: {validation_message(exc)}") from None

        from workers.compare import check_comparison, run_comparison
        from workers.tracking import TrackingSettings

        check_comparison(compare_spec)
        tracking = TrackingSettings(
            enabled=mlflow, tracking_uri=tracking_uri, experiment=experiment
        )
        display = SearchDisplay(
            console,
            target=compare_spec.target_sparsity,
            tolerance=compare_spec.tolerance,
            max_trials=compare_spec.trial_budget(),
            epochs=compare_spec.training.epochs,
        )
        with display:
            result = run_comparison(
                compare_spec,
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
