"""Print a search result in its JSON form (``SearchResult.to_dict()``, a job's ``result``).

``strsearch search`` prints the result it computed; ``strsearch result`` and ``strsearch watch``
print the one the service stores for a job. Both go through :func:`print_result`, so the answer
looks the same whether the search ran here or on an agent. Torch-free (rich only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from strsearch.cli.render import budget_table


def _pct(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else "?"


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "?"


def comparison_table(result: Mapping[str, Any]) -> Table:
    """One line per method of a comparison's ``table``: sparsity, test accuracy (mean ± std
    over seeds), MACs and nonzero weights."""
    table = Table(
        "method", "seeds", "sparsity", "test acc", "MACs", "of dense", "nonzero", "λ",
        title=f"methods at {_pct(result.get('target'))} sparsity", header_style="bold",
    )  # fmt: skip
    for row in result.get("table") or ():
        seeds = len(row.get("seeds") or ())
        failed = f" ({row['failed']} failed)" if row.get("failed") else ""
        flops, dense = row.get("flops_mean"), row.get("dense_flops")
        table.add_row(
            str(row.get("method")),
            f"{seeds}{failed}",
            f"{_pct(row.get('sparsity_mean'))} ± {_num(row.get('sparsity_std'), '.2%')}",
            f"{_pct(row.get('test_acc_mean'))} ± {_num(row.get('test_acc_std'), '.2%')}",
            _num(flops, ",.0f"),
            _pct(flops / dense) if isinstance(flops, int | float) and dense else "?",
            _num(row.get("nonzero_mean"), ",.0f"),
            _num(row.get("weight_decay"), ".3g"),
        )
    return table


def print_result(console: Console, result: Mapping[str, Any]) -> None:
    """The best trial's per-layer budget and metrics (a comparison: its table), then where
    the search is recorded."""
    if result.get("kind") == "comparison":
        console.print(comparison_table(result))
        searches = result.get("searches") or {}
        missed = [m for m, search in searches.items() if not search.get("reached")]
        note = f"; searches that missed the band: {', '.join(missed)}" if missed else ""
        console.print(
            f"{len(result.get('trials') or ())} trials, {result.get('total_epochs', '?')} "
            f"epochs{note}",
            highlight=False,
        )
        _print_links(console, result)
        return
    best: Mapping[str, Any] | None = result.get("best")
    trials = result.get("trials") or []
    count = f"{len(trials)} trials" if trials else "trials"
    if result.get("reached") and best is not None:
        console.print(
            budget_table(
                dict(best.get("budget") or {}),
                dict(best.get("thresholds") or {}),
                "per-layer budget of the best",
            )
        )
        flops = ""
        if isinstance(best.get("flops"), int | float) and best.get("dense_flops"):
            flops = f", MACs {best['flops'] / best['dense_flops']:.1%} of dense"
        console.print(
            f"[bold green]landed[/]: λ={_num(best.get('weight_decay'), '.4g')}, "
            f"s_init={_num(best.get('s_init'), 'g')} → sparsity {_pct(best.get('sparsity'))}, "
            f"val acc {_pct(best.get('val_acc'))}, test acc {_pct(best.get('test_acc'))}"
            f"{flops} ({count}, {result.get('total_epochs', '?')} epochs)",
            highlight=False,
        )
    else:
        closest = (
            ""
            if best is None
            else f"; closest: λ={_num(best.get('weight_decay'), '.4g')} → "
            f"{_pct(best.get('sparsity'))}"
        )
        console.print(f"[bold yellow]not reached[/] within {count}{closest}", highlight=False)
    _print_links(console, result)


def _print_links(console: Console, result: Mapping[str, Any]) -> None:
    if result.get("experiment_path"):
        console.print(f"experiment: {result['experiment_path']}", highlight=False)
    if result.get("mlflow_run_url"):
        console.print(f"MLflow run: {result['mlflow_run_url']}", highlight=False)
    if result.get("registered_model"):
        console.print(f"registered model: {result['registered_model']}", highlight=False)
