"""The Typer application and its command registrations."""

from __future__ import annotations

import typer

from strsearch.cli import budget, catalog, compare, jobs, search, serve, train, ui
from strsearch.cli.agent import agent
from strsearch.cli.token import token_app

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
app.command("compare")(compare.compare)
app.command("models")(catalog.models)
app.command("datasets")(catalog.datasets)
app.command("ui")(ui.ui)
# the service: run it, use it as a client, and its agents
app.command("serve")(serve.serve)
app.command("demo")(serve.demo)
app.command("submit")(jobs.submit)
app.command("jobs")(jobs.jobs)
app.command("watch")(jobs.watch)
app.command("cancel")(jobs.cancel)
app.command("result")(jobs.result)
app.add_typer(token_app, name="token")
app.command("agent")(agent)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="strsearch")
