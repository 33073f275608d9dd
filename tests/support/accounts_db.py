"""One migrated database per backend for the account tests, emptied before each test.

Creating and migrating a PostgreSQL database costs about a second, so the account
tests share one per backend for the whole run and wipe every table between tests
(``DELETE``, and on PostgreSQL the id sequences restarted), which keeps ids
predictable. Load them with::

    pytest_plugins = ["tests.support.accounts_db"]

in the test module, and take ``db`` (a :class:`Database`) or ``db_url`` (its URL, for the CLI) in tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text

from claudestore.storage import billing_models, web_models  # noqa: F401  (register their tables on Base.metadata)
from claudestore.storage.db import Database
from claudestore.storage.migrate import migrate
from claudestore.storage.models import Base
from tests.support.databases import postgres_database


@pytest_asyncio.fixture(
    name="shared_db_url", scope="session", loop_scope="session", params=["sqlite", "postgres"]
)
async def shared_db_url_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('accounts') / 'claudestore.db'}"
        await migrate(url)
        yield url
        return
    async with postgres_database() as url:
        await migrate(url)
        yield url


@pytest_asyncio.fixture(name="shared_db", scope="session", loop_scope="session")
async def shared_db_fixture(shared_db_url: str) -> AsyncIterator[Database]:
    db = Database(shared_db_url)
    yield db
    await db.close()


async def wipe(db: Database) -> None:
    tables = [(t.name, "id" in t.columns) for t in reversed(Base.metadata.sorted_tables)]
    async with db.engine.begin() as connection:
        for table, has_id in tables:
            await connection.execute(text(f"DELETE FROM {table}"))
            if has_id and connection.dialect.name == "postgresql":
                await connection.execute(text(f"ALTER SEQUENCE {table}_id_seq RESTART"))


@pytest_asyncio.fixture(name="db", loop_scope="session")
async def clean_db(shared_db: Database) -> Database:
    """The shared database of this backend, with every table empty."""
    await wipe(shared_db)
    return shared_db


@pytest_asyncio.fixture(name="db_url", loop_scope="session")
async def clean_db_url(shared_db_url: str, shared_db: Database) -> str:
    """The URL of the shared database, emptied (for code that opens its own engine)."""
    await wipe(shared_db)
    return shared_db_url
