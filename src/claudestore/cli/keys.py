"""``claudestore keys``: create, list and revoke API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.core.errors import GatewayError
from claudestore.storage.db import DEFAULT_DATABASE_URL, Database, normalize_url, sqlite_path
from claudestore.storage.keys import AmbiguousPrefix, create_key, get_key, list_keys, revoke_key
from claudestore.storage.migrate import migrate
from claudestore.storage.models import ApiKey

T = TypeVar("T")


def resolve_database_url(database_url: str | None, config_path: str | None) -> str:
    """``--database-url``, else the config file's ``database.url``, else the default."""
    if database_url:
        return database_url
    if config_path:
        from claudestore.config import load_config  # lazy: keeps ``keys`` importable on its own

        return load_config(config_path).database.url
    return DEFAULT_DATABASE_URL


def _database_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--database-url",
        envvar="CLAUDESTORE_DATABASE_URL",
        metavar="URL",
        help="Database URL (overrides the config file), e.g. sqlite:///claudestore.db.",
    )(command)
    return click.option(
        "--config",
        "config_path",
        envvar="CLAUDESTORE_CONFIG",
        type=click.Path(exists=True, dir_okay=False),
        help="Path to the ClaudeStore config file (its database.url is used).",
    )(command)


def _run(
    database_url: str | None, config_path: str | None, work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Migrate, then run ``work`` in one session and commit it (nothing is committed on error)."""

    async def in_session(db: Database) -> T:
        async with db.session() as session:
            result = await work(session)
            await session.commit()
            return result

    return _run_db(database_url, config_path, in_session)


def _run_db(database_url: str | None, config_path: str | None, work: Callable[[Database], Awaitable[T]]) -> T:
    """Migrate, then run ``work`` with a :class:`Database` (closed afterwards)."""
    url = resolve_database_url(database_url, config_path)
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise click.ClickException(
            f"Cannot open the SQLite database {path}: directory {path.parent} does not exist"
        )

    async def main() -> T:
        await migrate(url)
        db = Database(url)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        where = make_url(normalize_url(url)).render_as_string(hide_password=True)
        raise click.ClickException(f"Database error ({where}): {exc}") from exc


def _when(value: datetime | None, empty: str = "-") -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else empty


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


@click.group("keys")
def keys() -> None:
    """Create, list and revoke API keys."""


def split_patterns(values: Sequence[str]) -> list[str] | None:
    """``--model a --model b,c`` → ``["a", "b", "c"]``; None when no option was given."""
    patterns = [p.strip() for value in values for p in value.split(",") if p.strip()]
    return patterns or None


@keys.command("create")
@click.argument("name")
@click.option("--expires-days", type=click.IntRange(min=1), metavar="N", help="Expire the key after N days.")
@click.option(
    "--account",
    "account_id",
    type=int,
    metavar="ID",
    help="Make a customer key for this account (its plan, quota and balance apply). "
    "Without it the key is an operator key: no plan, no balance.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="PATTERN",
    help="Allow only models matching PATTERN (fnmatch, e.g. 'claude-*'; repeat or comma-separate).",
)
@click.option("--rpm", type=click.IntRange(min=1), metavar="N", help="Requests per minute for this key.")
@click.option("--tpm", type=click.IntRange(min=1), metavar="N", help="Tokens per minute for this key.")
@click.option(
    "--concurrency", type=click.IntRange(min=1), metavar="N", help="Requests in flight for this key."
)
@_database_options
def create_command(
    name: str,
    expires_days: int | None,
    account_id: int | None,
    models: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    concurrency: int | None,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Create a key called NAME and print it (once).

    Key limits and models only narrow what the account's plan allows.
    """
    limits = {"rpm_limit": rpm, "tpm_limit": tpm, "concurrency_limit": concurrency}
    patterns = split_patterns(models)

    async def work(session: AsyncSession) -> tuple[str, ApiKey]:
        if account_id is not None:
            from claudestore.accounts.keys import create_account_key

            data: dict[str, Any] = {"name": name, **{k: v for k, v in limits.items() if v is not None}}
            if expires_days:
                data["expires_in_days"] = expires_days
            if patterns:
                data["allowed_models"] = patterns
            return await create_account_key(session, account_id, data)
        expires_at = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
        raw, key = await create_key(session, name, expires_at)
        key.allowed_models = patterns
        key.rpm_limit, key.tpm_limit, key.concurrency_limit = rpm, tpm, concurrency
        await session.flush()
        return raw, key

    try:
        raw, key = _run(database_url, config_path, work)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(raw)
    owner = f" for account {key.account_id}" if key.account_id is not None else ""
    click.echo(f"Created key {key.id} ({key.prefix}) named {key.name!r}{owner}", err=True)
    if key.expires_at:
        click.echo(f"Expires {_when(key.expires_at)} UTC", err=True)
    click.secho("Store it now: it will not be shown again.", fg="yellow", err=True)


@keys.command("list")
@click.option("--account", "account_id", type=int, metavar="ID", help="Only the keys of this account.")
@_database_options
def list_command(account_id: int | None, config_path: str | None, database_url: str | None) -> None:
    """List all keys (never the keys themselves)."""
    rows: list[ApiKey] = _run(database_url, config_path, list_keys)
    if account_id is not None:
        rows = [k for k in rows if k.account_id == account_id]
    if not rows:
        click.echo("No API keys yet. Create one with: claudestore keys create NAME")
        return
    now = datetime.now(UTC)
    header = ("ID", "PREFIX", "NAME", "CREATED", "LAST USED", "EXPIRES", "STATUS")
    body = [
        (
            str(k.id),
            k.prefix,
            k.name,
            _when(k.created_at),
            _when(k.last_used_at, "never"),
            _when(k.expires_at, "never"),
            k.status(now),
        )
        for k in rows
    ]
    click.echo(_table(header, body))


@keys.command("revoke")
@click.argument("ident", metavar="ID_OR_PREFIX")
@_database_options
def revoke_command(ident: str, config_path: str | None, database_url: str | None) -> None:
    """Revoke the key with this id or prefix (e.g. 3 or sk-cs-Ab12Cd34)."""

    async def work(session: AsyncSession) -> tuple[ApiKey | None, bool]:
        key = await get_key(session, ident)
        if key is None:
            return None, False
        already = key.revoked_at is not None
        await revoke_key(session, key.id)
        return key, already

    try:
        key, already = _run(database_url, config_path, work)
    except AmbiguousPrefix as exc:
        raise click.ClickException(str(exc)) from exc
    if key is None:
        raise click.ClickException(f"No API key with id or prefix {ident!r} (see: claudestore keys list)")
    if already:
        click.echo(f"Key {key.id} ({key.prefix}) was already revoked at {_when(key.revoked_at)} UTC.")
    else:
        click.echo(f"Revoked key {key.id} ({key.prefix}) named {key.name!r}.")
