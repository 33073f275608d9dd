"""Bring a database schema up to date, programmatically.

:func:`migrate` upgrades to the newest Alembic revision. It is idempotent and safe
to call at every server start, even from several processes at once: on
PostgreSQL the upgrade runs under a transaction-scoped advisory lock, on SQLite
inside a ``BEGIN IMMEDIATE`` transaction, so concurrent callers queue up and the
later ones find the schema current. DDL is transactional on both backends, so a
failed migration leaves the schema untouched.

The migration scripts live in ``claudestore/storage/migrations``; no
``alembic.ini`` is needed. To write a new revision against a scratch database::

    from alembic import command
    from claudestore.storage.migrate import alembic_config

    command.revision(alembic_config("sqlite:///scratch.db"), "add accounts", autogenerate=True)

then review the generated file (and name it ``NNNN_<what>.py`` like the others).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from claudestore.storage.db import make_engine, normalize_url

MIGRATIONS_PATH = Path(__file__).with_name("migrations")

# pg_advisory_xact_lock key shared by every ClaudeStore migrator ("Claude" in ASCII).
_PG_MIGRATION_LOCK = 0x436C61756465


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (no ini file on disk).

    ``url`` is only needed when Alembic itself must connect (e.g. ``command.revision``
    with autogenerate); :func:`migrate` hands over its own connection instead.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = normalize_url(url)
    return config


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest)."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        _sqlite_immediate_transactions(engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _sqlite_immediate_transactions(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, emit BEGIN, and make it BEGIN IMMEDIATE.

    This makes DDL transactional and takes the write lock up front, so a second
    migrator waits (busy_timeout) instead of racing. Foreign keys are switched off
    for the migration connection, as SQLite's table-rebuild recipe (Alembic batch
    mode) requires.
    """

    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=OFF")
        finally:
            cursor.close()

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
