"""``strsearch token create``: a new API token, written straight into the service's database.

Tokens are made where the database is reachable (the machine of ``strsearch serve``, or any host
with the PostgreSQL URL), not over HTTP: the service has no route that mints tokens, so a leaked
user token cannot create others. The plain token is printed once on stdout; the database keeps
only its hash. A new database is brought to the latest schema first.
"""

from __future__ import annotations

from typing import Annotated

import typer

from strsearch.cli.errors import user_errors

token_app = typer.Typer(
    name="token",
    help="API tokens of the service (made in its database; shown once).",
    no_args_is_help=True,
)


@token_app.command("create")
def create(
    user: Annotated[str, typer.Option(help="The user's name (created if new).")],
    admin: Annotated[
        bool, typer.Option("--admin", help="The user is an admin (sees every job).")
    ] = False,
    worker: Annotated[
        bool, typer.Option("--worker", help="An agent's token (the /agent routes only).")
    ] = False,
    label: Annotated[str, typer.Option(help="A note stored with the token.")] = "",
    database: Annotated[
        str | None,
        typer.Option(
            envvar="STRSEARCH_DATABASE_URL",
            help="SQLAlchemy URL of the service's database [default: sqlite:///runs/service/"
            "service.db, the one `strsearch serve` uses].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a token for USER and print it (the only time it is shown)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from service.db import make_engine, schema_at_head, upgrade
    from service.settings import Settings
    from service.states import Role
    from service.users import Users

    with user_errors():
        if admin and worker:
            raise ValueError("--admin and --worker exclude each other")
        role = Role.ADMIN if admin else Role.WORKER if worker else Role.USER
        url = database or Settings().database_url
        try:
            shown = make_url(url).render_as_string(hide_password=True)
        except ArgumentError:
            raise ValueError(f"--database: not a database URL: {url!r}") from None
        try:
            engine = make_engine(url)
            try:
                if not schema_at_head(engine):
                    upgrade(engine)
                token = Users(engine).create_token(user, role, label)
            finally:
                engine.dispose()
        except SQLAlchemyError as exc:
            reason = str(exc).splitlines()[0]
            raise ValueError(f"cannot use the database {shown}: {reason}") from None
    print(token)
    typer.echo(f"token of {role.value} {user!r}: store it now, it is not shown again", err=True)
