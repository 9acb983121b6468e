"""The ``strsearch`` command line (Typer). Each command imports its heavy dependencies lazily."""

from strsearch.cli.app import app, main

__all__ = ["app", "main"]
