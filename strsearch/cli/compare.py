"""``strsearch compare``: STR against the pruning baselines (and STR's ablations) at one target."""

from __future__ import annotations

from typing import Any

from strsearch.cli import run_options
from strsearch.cli.spec_options import spec_options


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
    from strsearch.spec import DEFAULT_METHODS

    run_options.run_here(
        {"methods": list(DEFAULT_METHODS)} | spec,
        kind="comparison",
        address=address,
        storage=storage,
        fresh=fresh,
        mlflow=mlflow,
        tracking_uri=tracking_uri,
        experiment=experiment,
        json_output=json_output,
    )
