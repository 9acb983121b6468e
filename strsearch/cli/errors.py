"""Turn expected user errors into a one-line message and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

USER_ERRORS = (KeyError, ValueError, FileNotFoundError, NotADirectoryError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report :data:`USER_ERRORS` raised inside the block as ``error: ...`` and exit 2."""
    try:
        yield
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(code=2) from exc
