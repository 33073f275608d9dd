"""Database URLs, engines and sessions.

Everything talks to the database through async SQLAlchemy: ``aiosqlite`` for
SQLite (the zero-setup default) and ``asyncpg`` for PostgreSQL. Repository code
receives an :class:`~sqlalchemy.ext.asyncio.AsyncSession` from
:meth:`Database.session` and never commits; the service boundary does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///claudestore.db"

#: How long SQLite waits for a competing writer before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

_SYNC_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def normalize_url(url: str) -> str:
    """Map a plain database URL onto the async driver ClaudeStore uses.

    ``sqlite:///x.db`` becomes ``sqlite+aiosqlite:///x.db``; ``postgresql://`` and
    ``postgres://`` become ``postgresql+asyncpg://``. URLs that already name a
    driver (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``, ...) are kept.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"Not a database URL: {url!r} (expected e.g. sqlite:///claudestore.db)")
    return f"{_SYNC_SCHEMES.get(scheme.lower(), scheme)}://{rest}"


def is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for other backends and in-memory databases."""
    parsed = make_url(normalize_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # URI filename
        return None
    return Path(database)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers run alongside the single writer; NORMAL is durable in WAL mode
    # except for the last transactions on power loss, which is fine for a gateway.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url`` (normalized), with the SQLite pragmas applied."""
    engine = create_async_engine(normalize_url(url), echo=echo)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """One engine plus a session factory; create one per process and share it."""

    def __init__(self, url: str = DEFAULT_DATABASE_URL, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.engine: AsyncEngine = make_engine(self.url, echo=echo)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for one unit of work. Uncommitted work is rolled back on exit."""
        async with self._sessions() as session:
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
