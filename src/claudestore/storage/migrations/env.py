"""Alembic environment for ClaudeStore (used by ``claudestore.storage.migrate``).

Normally :func:`~claudestore.storage.migrate.migrate` passes an open connection in
``config.attributes["connection"]``. Without one (``command.revision`` with
autogenerate, offline ``--sql`` runs), the URL comes from
``config.attributes["url"]``, the ``sqlalchemy.url`` option or
``CLAUDESTORE_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from claudestore.storage import billing_models, web_models  # noqa: F401  (register their tables on Base.metadata)
from claudestore.storage.db import make_engine, normalize_url
from claudestore.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = (
        config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("CLAUDESTORE_DATABASE_URL")
    )
    if not url:
        raise RuntimeError("No database URL: use claudestore.storage.migrate.migrate(url)")
    return normalize_url(url)


async def _run_online() -> None:
    engine = make_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = config.attributes.get("connection")
if _connection is not None:
    _configure(_connection)
elif context.is_offline_mode():
    _run_offline()
else:
    asyncio.run(_run_online())
