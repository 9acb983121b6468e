"""Alembic environment for the service's schema.

``service.db.upgrade`` passes an open connection in ``config.attributes["connection"]``; the
``alembic`` command line (``-c service/migrations/alembic.ini``) connects by itself, to
``STRSEARCH_DATABASE_URL`` when set, else to the ini file's ``sqlalchemy.url``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from service.db import make_engine
from service.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the given connection, or on a new engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("STRSEARCH_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set STRSEARCH_DATABASE_URL or sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.begin() as own:
            _configure(own)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
