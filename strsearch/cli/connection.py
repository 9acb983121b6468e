"""How the client commands reach the service: server URL, token, and error reporting.

Every client command (``submit``, ``jobs``, ``watch``, ``cancel``, ``result``) takes the same
``--server`` / ``--token`` / ``--token-file`` options. The token is the ``--token`` option, else
``STRSEARCH_TOKEN``, else the file that ``strsearch serve`` writes (``runs/service/token``), so on
the machine running ``strsearch serve`` the commands work with no set-up. An error answer of the
API becomes one ``error:`` line naming the field and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from strsearch.client import DEFAULT_SERVER, ApiError, Client

SERVICE_PANEL = "Service"
DEFAULT_TOKEN_FILE = Path("runs/service/token")

ServerOption = Annotated[
    str,
    typer.Option(
        envvar="STRSEARCH_SERVER", help="URL of the service.", rich_help_panel=SERVICE_PANEL
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        envvar="STRSEARCH_TOKEN",
        help="Bearer token (default: the --token-file).",
        show_default=False,
        rich_help_panel=SERVICE_PANEL,
    ),
]
TokenFileOption = Annotated[
    Path,
    typer.Option(
        envvar="STRSEARCH_TOKEN_FILE",
        help="File holding the token when none is given (written by `strsearch serve`).",
        rich_help_panel=SERVICE_PANEL,
    ),
]

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_TOKEN_FILE",
    "ServerOption",
    "TokenFileOption",
    "TokenOption",
    "api_errors",
    "open_client",
    "resolve_token",
]


def resolve_token(token: str | None, token_file: Path) -> str | None:
    """The given token, else the first line of ``token_file`` if it exists, else ``None``."""
    if token:
        return token.strip()
    try:
        text = token_file.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text.splitlines()[0].strip() if text else None


def open_client(
    server: str, token: str | None, token_file: Path, *, retry_seconds: float = 5.0
) -> Client:
    """A :class:`Client` for ``server`` with the resolved token.

    ``retry_seconds`` is how long calls that are safe to repeat keep trying while the server
    cannot be reached; short for one-shot commands, longer for ``watch`` (an API restart).
    """
    return Client(server, resolve_token(token, token_file), retry_seconds=retry_seconds)


def _hint(error: ApiError) -> str:
    if error.status == 401:
        return (
            " (give --token or STRSEARCH_TOKEN, or run `strsearch serve`, which writes "
            f"{DEFAULT_TOKEN_FILE})"
        )
    return ""


@contextlib.contextmanager
def api_errors(server: str) -> Iterator[None]:
    """Report an API error (exit 2) or an unreachable server (exit 1) as one ``error:`` line."""
    import httpx

    console = Console(stderr=True)
    try:
        yield
    except ApiError as exc:
        console.print(f"[bold red]error:[/] {exc}{_hint(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except httpx.TransportError as exc:
        console.print(
            f"[bold red]error:[/] cannot reach the service at {server} ({exc}); is it running "
            "(`strsearch serve`)?",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from None
