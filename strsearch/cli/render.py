"""Rich renderings of accounting tables and training progress."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # torch-free at run time: the service's client commands import this module
    from str_core.metrics import Accounting


def make_console(*, stderr: bool = False) -> Console:
    """A console at least 120 columns wide when output goes to a file or pipe (rich's default of
    80 would squeeze the per-layer table)."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=max(console.width, 120))
    return console


def human(n: float) -> str:
    """1234567 -> '1.23M' (thousands: K, millions: M, billions: G)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def accounting_table(acc: Accounting, title: str | None = None) -> Table:
    """Per-layer table: name, shape, params, non-zero, sparsity, threshold, FLOPs; then totals."""
    table = Table(title=title, show_footer=True, header_style="bold")
    table.add_column("layer", footer="total", no_wrap=True)
    table.add_column("shape")
    table.add_column("params", justify="right", footer=f"{acc.total_params:,}")
    table.add_column("non-zero", justify="right", footer=f"{acc.total_nonzero:,}")
    table.add_column("sparsity", justify="right", footer=f"{acc.sparsity:.2%}")
    table.add_column("threshold", justify="right")
    table.add_column("dense MACs", justify="right", footer=human(acc.dense_flops))
    table.add_column("sparse MACs", justify="right", footer=human(acc.sparse_flops))
    for row in acc.rows:
        table.add_row(
            row.name,
            "×".join(str(d) for d in row.shape),
            f"{row.params:,}",
            f"{row.nonzero:,}",
            f"{row.sparsity:.2%}",
            "" if row.threshold is None else f"{row.threshold:.4g}",
            human(row.dense_flops),
            human(row.sparse_flops),
        )
    if acc.pool_flops:
        table.add_row(
            "(average pool)", "", "", "", "", "", human(acc.pool_flops), human(acc.pool_flops)
        )
    table.caption = (
        "Sparsity over conv/linear weights (biases and BN excluded); MACs of conv/linear layers "
        "scaled by weight density, plus average pooling."
    )
    return table


def budget_table(
    budget: dict[str, float], thresholds: dict[str, float], title: str | None = None
) -> Table:
    """A trial's per-layer budget: layer, sparsity, learnt threshold g(s)."""
    table = Table(title=title, header_style="bold")
    table.add_column("layer", no_wrap=True)
    table.add_column("sparsity", justify="right")
    table.add_column("threshold", justify="right")
    for name, sparsity in budget.items():
        threshold = thresholds.get(name)
        table.add_row(name, f"{sparsity:.2%}", "" if threshold is None else f"{threshold:.4g}")
    return table
