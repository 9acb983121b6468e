"""The Typer application and its command registrations."""

from __future__ import annotations

import typer

from strsearch.cli import budget, catalog, search, train, ui

app = typer.Typer(
    name="strsearch",
    help="Train networks to a requested sparsity with Soft Threshold Reparameterization (STR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("train")(train.train)
app.command("budget")(budget.budget)
app.command("search")(search.search)
app.command("models")(catalog.models)
app.command("datasets")(catalog.datasets)
app.command("ui")(ui.ui)


def main() -> None:
    """Console-script entry point."""
    app()
