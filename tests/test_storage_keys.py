"""Storage and API keys, on SQLite and PostgreSQL (see tests/support/databases.py)."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Connection, event, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from claudestore.cli.keys import keys as keys_cli
from claudestore.cli.keys import resolve_database_url
from claudestore.core.errors import AuthenticationFailed, InternalError
from claudestore.storage.auth import KeyAuthenticator, KeyInfo
from claudestore.storage.db import DEFAULT_DATABASE_URL, Database, make_engine, normalize_url, sqlite_path
from claudestore.storage.keys import (
    KEY_LENGTH,
    AmbiguousPrefix,
    create_key,
    find_key,
    generate_key,
    hash_key,
    list_keys,
    revoke_key,
)
from claudestore.storage.migrate import alembic_config, migrate
from claudestore.storage.models import ApiKey, Base

# -- helpers ----------------------------------------------------------------------


class QueryCounter:
    """Every statement the engine sends (one entry per execute / executemany)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def __len__(self) -> int:
        return len(self.statements)

    def reset(self) -> None:
        self.statements.clear()


@contextmanager
def count_queries(engine: AsyncEngine) -> Iterator[QueryCounter]:
    counter = QueryCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", counter)


async def new_key(db: Database, name: str = "test", expires_at: datetime | None = None) -> tuple[str, ApiKey]:
    async with db.session() as session:
        raw, key = await create_key(session, name, expires_at)
        await session.commit()
    return raw, key


async def load(db: Database, key_id: int) -> ApiKey:
    async with db.session() as session:
        key = await session.get(ApiKey, key_id)
        assert key is not None
        return key


@pytest.fixture
def authenticator_factory(database: Database) -> Iterator[Any]:
    made: list[KeyAuthenticator] = []

    def make(**kwargs: Any) -> KeyAuthenticator:
        made.append(KeyAuthenticator(database, **kwargs))
        return made[-1]

    yield make
    for auth in made:
        assert auth._flusher is None, "authenticator left running"


# -- urls and migrations ----------------------------------------------------------


def test_normalize_url() -> None:
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("sqlite:////abs/x.db") == "sqlite+aiosqlite:////abs/x.db"
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert normalize_url("postgres://u@h:5433/db") == "postgresql+asyncpg://u@h:5433/db"
    assert normalize_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("postgresql+asyncpg://h/db") == "postgresql+asyncpg://h/db"
    assert normalize_url(DEFAULT_DATABASE_URL) == DEFAULT_DATABASE_URL
    with pytest.raises(ValueError, match="Not a database URL"):
        normalize_url("claudestore.db")


def _schema_report(connection: Connection) -> tuple[set[str], list[Any], str | None]:
    tables = set(inspect(connection).get_table_names())
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return tables, compare_metadata(context, Base.metadata), context.get_current_revision()


async def test_migrate_idempotent_and_matches_models(database_url: str) -> None:
    await asyncio.gather(migrate(database_url), migrate(database_url))  # concurrent first start
    await migrate(database_url)  # and every start after that
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables, diffs, revision = await connection.run_sync(_schema_report)
    finally:
        await engine.dispose()
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert diffs == []
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_sqlite_pragmas(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        async with db.session() as session:
            assert (await session.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await session.scalar(text("PRAGMA synchronous"))) == 1  # NORMAL
            assert (await session.scalar(text("PRAGMA busy_timeout"))) == 5000
    finally:
        await db.close()


# -- repository -------------------------------------------------------------------


async def test_create_list_find_revoke(database: Database) -> None:
    raw_a, a = await new_key(database, "alpha")
    raw_b, b = await new_key(database, "beta")
    assert raw_a.startswith("sk-cs-") and len(raw_a) == KEY_LENGTH == 49
    assert a.prefix == raw_a[:14] and a.id != b.id
    assert a.created_at.tzinfo is not None and a.status() == "active"

    async with database.session() as session:
        assert [k.name for k in await list_keys(session)] == ["alpha", "beta"]
        found = await find_key(session, raw_a)
        assert found is not None and found.id == a.id
        assert found.created_at == a.created_at and found.created_at.tzinfo == UTC
        assert await find_key(session, generate_key()) is None
        assert await find_key(session, raw_a[:-1] + ("A" if raw_a[-1] != "A" else "B")) is None
        assert await find_key(session, "not-a-key") is None

        revoked = await revoke_key(session, a.id)
        assert revoked is not None and revoked.revoked_at is not None
        first_revocation = revoked.revoked_at
        assert (await revoke_key(session, str(a.id))) is revoked
        assert revoked.revoked_at == first_revocation  # revoking twice keeps the first time
        assert (await revoke_key(session, b.prefix)) is not None
        assert await revoke_key(session, 10_000) is None
        assert await revoke_key(session, "sk-cs-nothere0") is None
        await session.commit()

    async with database.session() as session:
        assert [k.status() for k in await list_keys(session)] == ["revoked", "revoked"]
        found = await find_key(session, raw_a)
        assert found is not None and found.revoked_at == first_revocation
        found = await find_key(session, raw_b)
        assert found is not None and found.id == b.id and found.status() == "revoked"


async def test_revoke_ambiguous_prefix(database: Database) -> None:
    _, a = await new_key(database, "a")
    _, b = await new_key(database, "b")
    async with database.session() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == b.id).values(prefix=a.prefix))
        with pytest.raises(AmbiguousPrefix):
            await revoke_key(session, a.prefix)


async def test_only_the_hash_is_stored(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, key = await new_key(database, "secret")
    assert key.key_hash == hash_key(raw) != raw
    assert len(key.key_hash) == 64 and int(key.key_hash, 16) >= 0
    secret_part = raw[len("sk-cs-") + 8 :]

    def dump(connection: Connection) -> list[str]:
        values = []
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                values.extend(str(v) for v in row if v is not None)
        return values

    async with database.engine.connect() as connection:
        values = await connection.run_sync(dump)
    assert key.key_hash in values
    assert not [v for v in values if raw in v or secret_part in v]

    monkeypatch.setenv("CLAUDESTORE_KEY_PEPPER", "another pepper")
    assert hash_key(raw) != key.key_hash  # the pepper is part of the hash


async def test_expiry(database: Database, authenticator_factory: Any) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    raw_old, old = await new_key(database, "old", past)
    raw_soon, soon = await new_key(database, "soon", datetime.now(UTC) + timedelta(seconds=0.3))
    assert old.status() == "expired" and soon.status() == "active"
    assert (await load(database, old.id)).expires_at == past

    auth = authenticator_factory()
    with pytest.raises(AuthenticationFailed, match=r"This API key expired at \d{4}-\d\d-\d\d "):
        await auth.authenticate(raw_old)
    assert (await auth.authenticate(raw_soon)).expires_at == soon.expires_at
    await asyncio.sleep(0.35)
    with count_queries(database.engine) as queries, pytest.raises(AuthenticationFailed, match="expired"):
        await auth.authenticate(raw_soon)  # expiry is checked on every cache hit
    assert len(queries) == 0


# -- authenticator ----------------------------------------------------------------


async def test_cache_hit_costs_no_query(database: Database, authenticator_factory: Any) -> None:
    raw, key = await new_key(database, "hot")
    auth = authenticator_factory(ttl=60)
    with count_queries(database.engine) as queries:
        info = await auth.authenticate(raw)
        assert info == KeyInfo(key.id, "hot", key.prefix, None)
        assert len(queries) == 1
        for _ in range(100):
            assert await auth.authenticate(f"  {raw}\n") is info
        assert len(queries) == 1


async def test_rejections_and_messages(database: Database, authenticator_factory: Any) -> None:
    auth = authenticator_factory(negative_ttl=0.2)
    with count_queries(database.engine) as queries:
        for missing in (None, "", "   "):
            with pytest.raises(
                AuthenticationFailed, match="Missing API key: send it in the x-api-key header"
            ) as err:
                await auth.authenticate(missing)
            assert err.value.status == 401
        for malformed in ("sk-ant-api03-xyz", "sk-cs-short", "sk-cs-" + "!" * 43):
            with pytest.raises(AuthenticationFailed, match="keys start with 'sk-cs-'"):
                await auth.authenticate(malformed)
        assert len(queries) == 0  # no hashing, no query for garbage

        unknown = generate_key()
        for _ in range(20):
            with pytest.raises(AuthenticationFailed, match=r"^Invalid API key\.$"):
                await auth.authenticate(unknown)
        assert len(queries) == 1  # negatively cached
        await asyncio.sleep(0.25)
        with pytest.raises(AuthenticationFailed, match=r"^Invalid API key\.$"):
            await auth.authenticate(unknown)
        assert len(queries) == 2  # ... for negative_ttl only


async def test_revocation_seen_after_ttl(database: Database, authenticator_factory: Any) -> None:
    raw, key = await new_key(database, "to-revoke")
    auth = authenticator_factory(ttl=0.2)
    await auth.authenticate(raw)
    async with database.session() as session:
        await revoke_key(session, key.id)
        await session.commit()
    await auth.authenticate(raw)  # still cached
    await asyncio.sleep(0.25)
    with pytest.raises(AuthenticationFailed, match=r"^This API key has been revoked\.$"):
        await auth.authenticate(raw)
    auth.clear()
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await auth.authenticate(raw)


async def test_single_flight(database: Database, authenticator_factory: Any) -> None:
    raw, key = await new_key(database, "popular")
    auth = authenticator_factory()
    unknown = generate_key()
    with count_queries(database.engine) as queries:
        infos = await asyncio.gather(*(auth.authenticate(raw) for _ in range(50)))
        assert len(queries) == 1
        assert {i.id for i in infos} == {key.id}
        results = await asyncio.gather(
            *(auth.authenticate(unknown) for _ in range(50)), return_exceptions=True
        )
        assert len(queries) == 2
        assert all(isinstance(r, AuthenticationFailed) for r in results)


async def test_cancelled_caller_does_not_break_shared_lookup(
    database: Database, authenticator_factory: Any
) -> None:
    raw, key = await new_key(database, "shared")
    auth = authenticator_factory()
    first = asyncio.ensure_future(auth.authenticate(raw))
    second = asyncio.ensure_future(auth.authenticate(raw))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).id == key.id
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_touches_flushed_in_one_batch(database: Database, authenticator_factory: Any) -> None:
    made = [await new_key(database, f"k{i}") for i in range(3)]
    auth = authenticator_factory()
    before = datetime.now(UTC) - timedelta(seconds=1)
    for raw, _ in made:
        for _ in range(5):
            await auth.authenticate(raw)
    with count_queries(database.engine) as queries:
        assert await auth.flush_touches() == 3
        assert len([q for q in queries.statements if q.lstrip().upper().startswith("UPDATE")]) == 1
        assert len(queries) == 1
        queries.reset()
        assert await auth.flush_touches() == 0
        assert len(queries) == 0
    for _, key in made:
        used = (await load(database, key.id)).last_used_at
        assert used is not None and before < used <= datetime.now(UTC)


async def test_touches_never_move_backwards(database: Database, authenticator_factory: Any) -> None:
    raw, key = await new_key(database, "k")
    auth = authenticator_factory()
    await auth.authenticate(raw)
    later = datetime.now(UTC) + timedelta(hours=1)
    async with database.session() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=later))
        await session.commit()
    await auth.flush_touches()
    assert (await load(database, key.id)).last_used_at == later


async def test_flush_loop_and_stop(database: Database, authenticator_factory: Any) -> None:
    raw_a, a = await new_key(database, "a")
    raw_b, b = await new_key(database, "b")
    auth = authenticator_factory(flush_interval=0.05)
    auth.start()
    await auth.authenticate(raw_a)
    await asyncio.sleep(0.2)
    assert (await load(database, a.id)).last_used_at is not None
    await auth.authenticate(raw_b)
    await auth.stop()  # flushes what is left
    assert (await load(database, b.id)).last_used_at is not None


async def test_database_failure_is_an_internal_error(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        with pytest.raises(InternalError, match="Could not verify the API key"):
            await KeyAuthenticator(db).authenticate(generate_key())
    finally:
        await db.close()


# -- CLI --------------------------------------------------------------------------


def test_cli_create_list_revoke(database_url: str) -> None:
    runner = CliRunner()
    url = ["--database-url", database_url]

    created = runner.invoke(keys_cli, ["create", "ci bot", "--expires-days", "30", *url])
    assert created.exit_code == 0, created.output
    raw = created.stdout.strip()
    assert raw.startswith("sk-cs-") and len(raw) == KEY_LENGTH
    assert raw[:14] in created.stderr and "will not be shown again" in created.stderr

    assert runner.invoke(keys_cli, ["create", "other", *url]).exit_code == 0

    listed = runner.invoke(keys_cli, ["list", *url])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["ID", "PREFIX", "NAME", "CREATED", "LAST", "USED", "EXPIRES", "STATUS"]
    assert raw[:14] in lines[1] and "ci bot" in lines[1] and "never" in lines[1] and "active" in lines[1]
    assert raw not in listed.output and hash_key(raw) not in listed.output

    revoked = runner.invoke(keys_cli, ["revoke", raw[:14], *url])
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked key 1" in revoked.output
    again = runner.invoke(keys_cli, ["revoke", "1", *url])
    assert again.exit_code == 0 and "already revoked" in again.output
    missing = runner.invoke(keys_cli, ["revoke", "42", *url])
    assert missing.exit_code == 1 and "No API key with id or prefix '42'" in missing.output

    listed = runner.invoke(keys_cli, ["list", *url])
    assert [line.split()[-1] for line in listed.output.splitlines()[1:]] == ["revoked", "active"]


def test_cli_empty_list_and_env_url(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    result = CliRunner().invoke(keys_cli, ["list"], env={"CLAUDESTORE_DATABASE_URL": url})
    assert result.exit_code == 0 and "No API keys yet" in result.output
    assert (tmp_path / "env.db").exists()


def test_cli_url_resolution(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("claudestore.config")
    seen: list[str | None] = []

    def load_config(path: str | None) -> Any:
        seen.append(path)
        return types.SimpleNamespace(database=types.SimpleNamespace(url="sqlite:///from-config.db"))

    fake.load_config = load_config  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "claudestore.config", fake)
    assert resolve_database_url("sqlite:///flag.db", "c.yaml") == "sqlite:///flag.db"
    assert resolve_database_url(None, "c.yaml") == "sqlite:///from-config.db"
    assert resolve_database_url(None, None) == DEFAULT_DATABASE_URL
    assert seen == ["c.yaml"]


def test_cli_bad_database_is_a_clean_error(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"
    result = CliRunner().invoke(keys_cli, ["list", "--database-url", url])
    assert result.exit_code == 1
    assert "directory" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_sqlite_path() -> None:
    assert str(sqlite_path("sqlite:///rel/x.db")) == "rel/x.db"
    assert str(sqlite_path("sqlite+aiosqlite:////abs/x.db")) == "/abs/x.db"
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://h/db") is None


async def test_models_selectable(database: Database) -> None:
    # column-level selects come back as aware UTC too, not just ORM objects
    await new_key(database, "x")
    async with database.session() as session:
        row = (await session.execute(select(ApiKey.id, ApiKey.name, ApiKey.created_at))).one()
    assert row.name == "x" and row.created_at.tzinfo == UTC
