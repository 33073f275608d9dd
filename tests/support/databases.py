"""Database fixtures: every test that takes ``database_url`` runs on SQLite and PostgreSQL.

Load with ``pytest_plugins = ["tests.support.databases"]`` in ``tests/conftest.py``.

* ``sqlite``: a fresh file under ``tmp_path``.
* ``postgres``: a fresh database ``cs_test_<hex>`` on the server at
  ``$CLAUDESTORE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
  dropped afterwards. If the server cannot be reached the test is skipped, or fails
  when ``CLAUDESTORE_REQUIRE_SERVICES=1`` (as in CI).

``database`` gives a migrated :class:`~claudestore.storage.db.Database` on the same URL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import URL, make_url

from claudestore.storage.db import Database
from claudestore.storage.migrate import migrate

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT = 3.0

_unreachable: dict[str, str] = {}  # base URL -> reason, so a dead server costs one timeout per run


def postgres_base_url() -> URL:
    return make_url(os.environ.get("CLAUDESTORE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))


def _dsn(url: URL, database: str | None = None) -> str:
    """A plain libpq-style DSN for asyncpg (no SQLAlchemy driver suffix)."""
    if database is not None:
        url = url.set(database=database)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def services_required() -> bool:
    return os.environ.get("CLAUDESTORE_REQUIRE_SERVICES") == "1"


async def _admin_connection(base: URL) -> asyncpg.Connection:
    shown = base.render_as_string(hide_password=True)
    reason = _unreachable.get(shown)
    if reason is None:
        try:
            return await asyncpg.connect(_dsn(base), timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            reason = (
                f"PostgreSQL not reachable at {shown} ({exc.__class__.__name__}: {exc}); "
                "set CLAUDESTORE_REQUIRE_SERVICES=1 to make this a failure"
            )
            _unreachable[shown] = reason
    if services_required():
        pytest.fail(reason.replace("; set CLAUDESTORE_REQUIRE_SERVICES=1 to make this a failure", ""))
    pytest.skip(reason)


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    base = postgres_base_url()
    name = f"cs_test_{secrets.token_hex(6)}"
    admin = await _admin_connection(base)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield base.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_dsn(base), timeout=CONNECT_TIMEOUT)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest_asyncio.fixture(params=["sqlite", "postgres"], loop_scope="session")
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database's async URL, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'claudestore.db'}"
        return
    async with postgres_database() as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated :class:`Database` on ``database_url``, closed afterwards."""
    await migrate(database_url)
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.close()
