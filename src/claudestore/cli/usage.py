"""``claudestore usage``: usage totals, recent requests and balance reconciliation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import usage
from claudestore.api import serialize
from claudestore.cli.common import _call, _cell, _json, _usd, json_option
from claudestore.cli.keys import _database_options, _run_db, _table, _when
from claudestore.core.errors import GatewayError
from claudestore.storage.db import Database


@click.group("usage")
def usage_group() -> None:
    """Usage and cost from the ledger; balance reconciliation."""


def _usage_cells(group: Any, row: usage.UsageRow) -> Sequence[str]:
    return (
        _cell(group),
        str(row.requests),
        str(row.errors),
        str(row.input_tokens),
        str(row.output_tokens),
        str(row.cache_write_tokens),
        str(row.cache_read_tokens),
        _usd(row.cost_nanos),
    )


@usage_group.command("show")
@click.option("--account", "account_id", type=int, help="Only this account.")
@click.option("--key", "key_id", type=int, help="Only this key (id).")
@click.option("--model", help="Only this model (exact id).")
@click.option(
    "--by", "group_by", type=click.Choice(usage.GROUPS), help="One row per day, model, key or account."
)
@click.option("--from", "start", metavar="DATE", help="From this UTC date or time (inclusive).")
@click.option("--to", "end", metavar="DATE", help="Up to this UTC date (inclusive) or time (exclusive).")
@json_option
@_database_options
def usage_show(
    account_id: int | None,
    key_id: int | None,
    model: str | None,
    group_by: str | None,
    start: str | None,
    end: str | None,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Requests, tokens and cost, in total or grouped."""

    async def work(session: AsyncSession) -> tuple[list[usage.UsageRow], usage.UsageRow]:
        lower, upper = usage.time_range(start, end)
        filters: dict[str, Any] = {"account_id": account_id, "key_id": key_id, "model": model}
        rows = (
            await usage.summarize(session, group_by=group_by, start=lower, end=upper, **filters)
            if group_by
            else []
        )
        (total,) = await usage.summarize(session, start=lower, end=upper, **filters)
        return rows, total

    rows, total = _call(database_url, config_path, work)
    if as_json:
        _json(
            {
                "data": [serialize.usage_row(r, group_by) for r in rows],
                "total": serialize.usage_row(total, None),
            }
        )
        return
    header = (
        group_by.upper() if group_by else "",
        "REQUESTS",
        "ERRORS",
        "INPUT",
        "OUTPUT",
        "CACHE W",
        "CACHE R",
        "COST",
    )
    body = [_usage_cells(r.group, r) for r in rows]
    body.append(_usage_cells("TOTAL", total))
    click.echo(_table(header, body))


@usage_group.command("requests")
@click.option("--account", "account_id", type=int, help="Only this account.")
@click.option("--key", "key_id", type=int, help="Only this key (id).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@_database_options
def usage_requests(
    account_id: int | None,
    key_id: int | None,
    limit: int,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """The most recent requests in the ledger."""
    rows = _call(
        database_url,
        config_path,
        lambda s: usage.recent(s, account_id=account_id, key_id=key_id, limit=limit),
    )
    if as_json:
        _json([serialize.usage_record(r, customer=False) for r in rows])
        return
    header = ("ID", "WHEN", "ACCOUNT", "KEY", "MODEL", "STATUS", "IN", "OUT", "COST")
    body = [
        (
            str(r.id),
            _when(r.created_at),
            _cell(r.account_id),
            _cell(r.key_id),
            _cell(r.model),
            str(r.status),
            str(r.input_tokens),
            str(r.output_tokens),
            _usd(r.cost_nanos),
        )
        for r in rows
    ]
    click.echo(_table(header, body) if body else "No requests recorded yet.")


@usage_group.command("reconcile")
@click.option("--fix", is_flag=True, help="Set stored balances to the computed ones.")
@json_option
@_database_options
def usage_reconcile(fix: bool, as_json: bool, config_path: str | None, database_url: str | None) -> None:
    """Check every balance against its credit entries minus billed usage."""
    try:
        from claudestore.billing.reconcile import reconcile
    except ImportError as exc:
        raise click.ClickException(f"Reconciliation is not available in this build ({exc}).") from None

    async def work(db: Database) -> list[Any]:
        return list(await reconcile(db, fix=fix))

    try:
        diffs = _run_db(database_url, config_path, work)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        _json(
            [
                {
                    "account_id": d.account_id,
                    "stored": d.stored,
                    "computed": d.computed,
                    "difference": d.difference,
                    "fixed": bool(getattr(d, "fixed", False)),
                }
                for d in diffs
            ]
        )
        return
    if not diffs:
        click.echo("Every balance matches its credit entries minus its usage.")
        return
    header = ("ACCOUNT", "STORED", "COMPUTED", "DIFFERENCE", *(("FIXED",) if fix else ()))
    body = [
        (
            str(d.account_id),
            _usd(int(d.stored)),
            _usd(int(d.computed)),
            _usd(int(d.difference)),
            *(("yes" if getattr(d, "fixed", False) else "no",) if fix else ()),
        )
        for d in diffs
    ]
    click.echo(_table(header, body))
    if not fix:
        click.echo(f"{len(diffs)} balances differ; run with --fix to set them to the computed values.")
        return
    fixed = sum(1 for d in diffs if getattr(d, "fixed", False))
    click.echo(f"Fixed {fixed} of {len(diffs)} balances.")
    if fixed < len(diffs):
        click.echo("The others changed while reconciling (requests were being charged); run again.")
