"""``claudestore prices``, ``credit`` and ``codes``: what tokens cost and how accounts pay."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import accounts as accounts_service
from claudestore.accounts import codes as codes_service
from claudestore.accounts import credit as credit_service
from claudestore.accounts import prices as prices_service
from claudestore.accounts.money import usd_to_nanos
from claudestore.api import serialize
from claudestore.cli.common import LIVE_CREDIT_NOTE, _call, _cell, _json, _put, _usd, json_option
from claudestore.cli.keys import _database_options, _table, _when


@click.group("prices")
def prices() -> None:
    """Model prices in USD per million tokens."""


@prices.command("set")
@click.argument("model")
@click.option("--input", "input_", required=True, help="USD per million input tokens.")
@click.option("--output", required=True, help="USD per million output tokens.")
@click.option("--cache-write", help="USD per million cache-write tokens (default 1.25 x input).")
@click.option("--cache-read", help="USD per million cache-read tokens (default 0.1 x input).")
@_database_options
def prices_set(
    model: str,
    input_: str,
    output: str,
    cache_write: str | None,
    cache_read: str | None,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Set the price of MODEL (an id or a pattern such as 'claude-*')."""
    data = {"input": input_, "output": output, "cache_write": cache_write, "cache_read": cache_read}
    row, created = _call(database_url, config_path, lambda s: prices_service.set_price(s, model, data))
    click.echo(
        f"{'Added' if created else 'Updated'} {row.model}: input ${row.input_per_mtok}, output ${row.output_per_mtok}, "
        f"cache write ${row.cache_write_per_mtok}, cache read ${row.cache_read_per_mtok} per Mtok."
    )


@prices.command("list")
@json_option
@_database_options
def prices_list(as_json: bool, config_path: str | None, database_url: str | None) -> None:
    """List model prices (USD per million tokens)."""
    rows = _call(database_url, config_path, prices_service.list_prices)
    if as_json:
        _json([serialize.price(p) for p in rows])
        return
    if not rows:
        click.echo(
            "No prices yet: requests cost nothing. Set one with: claudestore prices set MODEL --input 3 --output 15"
        )
        return
    body = [
        (
            p.model,
            str(p.input_per_mtok),
            str(p.output_per_mtok),
            str(p.cache_write_per_mtok),
            str(p.cache_read_per_mtok),
        )
        for p in rows
    ]
    click.echo(_table(("MODEL", "INPUT", "OUTPUT", "CACHE WRITE", "CACHE READ"), body))


@prices.command("delete")
@click.argument("model")
@_database_options
def prices_delete(model: str, config_path: str | None, database_url: str | None) -> None:
    """Remove the price of MODEL."""
    _call(database_url, config_path, lambda s: prices_service.delete_price(s, model))
    click.echo(f"Removed the price of {model}.")


# -- credit --------------------------------------------------------------------------------------


@click.group("credit")
def credit() -> None:
    """Add credit to accounts and read their credit history."""


@credit.command("add")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.argument("amount", metavar="USD")
@click.option("--reference", help="Free text, e.g. an invoice number.")
@_database_options
def credit_add(
    account_id: int, amount: str, reference: str | None, config_path: str | None, database_url: str | None
) -> None:
    """Add USD of credit to ACCOUNT (a top-up)."""

    async def work(session: AsyncSession) -> tuple[int, int, int]:
        nanos = usd_to_nanos(amount, "USD")
        entry_id = await credit_service.top_up(session, account_id, nanos, reference)
        return nanos, entry_id, await credit_service.balance(session, account_id)

    nanos, entry_id, balance = _call(database_url, config_path, work)
    click.echo(f"Added {_usd(nanos)} to account {account_id} (entry {entry_id}); balance {_usd(balance)}.")
    click.echo(LIVE_CREDIT_NOTE, err=True)


@credit.command("adjust", context_settings={"ignore_unknown_options": True})
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.argument("amount", metavar="USD")
@click.option("--reference", help="Why, e.g. 'refund for outage 2026-05-01'.")
@_database_options
def credit_adjust(
    account_id: int, amount: str, reference: str | None, config_path: str | None, database_url: str | None
) -> None:
    """Correct ACCOUNT's balance by USD, which may be negative (credit adjust 3 -5)."""

    async def work(session: AsyncSession) -> tuple[int, int, int]:
        nanos = usd_to_nanos(amount, "USD", allow_negative=True)
        entry_id = await credit_service.adjust(session, account_id, nanos, reference)
        return nanos, entry_id, await credit_service.balance(session, account_id)

    nanos, entry_id, balance = _call(database_url, config_path, work)
    click.echo(f"Adjusted account {account_id} by {_usd(nanos)} (entry {entry_id}); balance {_usd(balance)}.")
    click.echo(LIVE_CREDIT_NOTE, err=True)


@credit.command("history")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@_database_options
def credit_history(
    account_id: int, limit: int, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Credit entries of ACCOUNT, newest first."""

    async def work(session: AsyncSession) -> list[Any]:
        await accounts_service.get_account(session, account_id)
        return await credit_service.history(session, account_id, limit=limit)

    rows = _call(database_url, config_path, work)
    if as_json:
        _json([serialize.credit_entry(e) for e in rows])
        return
    body = [(str(e.id), _when(e.created_at), e.kind, _usd(e.amount_nanos), _cell(e.reference)) for e in rows]
    click.echo(_table(("ID", "WHEN", "KIND", "AMOUNT", "REFERENCE"), body) if body else "No credit entries.")


# -- codes ---------------------------------------------------------------------------------------


@click.group("codes")
def codes() -> None:
    """Redeem codes that add credit and/or start a plan."""


@codes.command("create")
@click.option("--credit-usd", help="Credit each code adds, in USD.")
@click.option("--plan", help="Plan (id or name) each code starts.")
@click.option("--count", type=click.IntRange(1, codes_service.MAX_BATCH), default=1, show_default=True)
@click.option("--max-uses", type=click.IntRange(min=1), default=1, show_default=True, help="Uses per code.")
@click.option("--expires-days", type=click.IntRange(min=1), help="Expire the codes after N days.")
@json_option
@_database_options
def codes_create(
    credit_usd: str | None,
    plan: str | None,
    count: int,
    max_uses: int,
    expires_days: int | None,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Create COUNT codes and print them, one a line (shown only this once)."""
    data: dict[str, Any] = {"count": count, "max_uses": max_uses}
    _put(data, "credit_usd", credit_usd)
    _put(data, "plan", plan)
    _put(data, "expires_in_days", expires_days)
    made = _call(database_url, config_path, lambda s: codes_service.create_codes(s, data))
    if as_json:
        _json([serialize.code(row, raw) for raw, row in made])
    else:
        for raw, _ in made:
            click.echo(raw)
    click.secho(
        f"Created {len(made)} codes. Store them now: they will not be shown again.", fg="yellow", err=True
    )


@codes.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@_database_options
def codes_list(limit: int, as_json: bool, config_path: str | None, database_url: str | None) -> None:
    """List codes, newest first (never the codes themselves)."""
    rows = _call(database_url, config_path, lambda s: codes_service.list_codes(s, limit=limit))
    if as_json:
        _json([serialize.code(c) for c in rows])
        return
    body = [
        (
            str(c.id),
            c.prefix,
            _usd(c.credit_nanos),
            _cell(c.plan_id),
            f"{c.uses}/{c.max_uses}",
            _when(c.expires_at, "never"),
        )
        for c in rows
    ]
    click.echo(_table(("ID", "PREFIX", "CREDIT", "PLAN", "USES", "EXPIRES"), body) if body else "No codes.")


@codes.command("delete")
@click.argument("code_id", metavar="ID", type=int)
@_database_options
def codes_delete(code_id: int, config_path: str | None, database_url: str | None) -> None:
    """Delete a code so it can no longer be redeemed."""
    row = _call(database_url, config_path, lambda s: codes_service.delete_code(s, code_id))
    click.echo(f"Deleted code {row.id} ({row.prefix}).")


# -- usage ---------------------------------------------------------------------------------------
