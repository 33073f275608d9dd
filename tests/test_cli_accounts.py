"""The account CLI end to end on both backends: account, plan, subscription, key, credit,
prices, codes, usage, reconcile."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click
from click.testing import CliRunner, Result

from claudestore.cli.accounts import register
from claudestore.cli.keys import keys
from claudestore.storage.billing_models import UsageRecord
from claudestore.storage.db import Database
from claudestore.storage.keys import find_key

pytest_plugins = ["tests.support.accounts_db"]  # the db and db_url fixtures, one database per backend


@click.group()
def cli() -> None:
    """The claudestore group, as cli/main.py builds it."""


cli.add_command(keys)
register(cli)


def invoke(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, [*args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return result


def fails(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--database-url", url])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    return result.output


def on_database(url: str, work: Any) -> Any:
    async def main() -> Any:
        db = Database(url)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(main())


def test_cli_walk(db_url: str) -> None:
    created = invoke(db_url, "accounts", "create", "Acme", "--email", "ops@acme.test", "--json")
    account = json.loads(created.output)
    aid = str(account["id"])
    assert account["email"] == "ops@acme.test"
    assert "Acme" in invoke(db_url, "accounts", "list").output

    plan = invoke(
        db_url,
        "plans", "create", "pro",
        "--rpm", "60", "--tpm", "100000", "--concurrency", "5", "--quota-tokens", "1000000",
        "--price", "20", "--period", "month", "--models", "claude-*", "--trial", "--credit-usd", "1.5",
    )  # fmt: skip
    assert "Created plan 1 'pro': $20/month, 60 rpm, 100000 tpm, 5 concurrent" in plan.output
    assert "rpm" in fails(db_url, "plans", "create", "bad", "--rpm", "fast")
    assert "already exists" in fails(db_url, "plans", "create", "pro")
    listed = invoke(db_url, "plans", "list").output
    assert "pro" in listed and "claude-*" in listed and "trial" in listed
    assert "rpm" not in invoke(db_url, "plans", "update", "pro", "--rpm", "none").output.split(":")[1]

    subscribed = invoke(db_url, "accounts", "subscribe", aid, "pro")
    assert (
        f"Account {aid} is on plan 'pro'" in subscribed.output
        and "$1.50 of included credit" in subscribed.output
    )
    assert "No plan 'gold'" in fails(db_url, "accounts", "subscribe", aid, "gold")

    key = invoke(db_url, "keys", "create", "ci", "--account", aid, "--model", "claude-haiku-*", "--rpm", "10")
    raw = key.stdout.strip()
    assert raw.startswith("sk-cs-") and f"for account {aid}" in key.stderr
    row = on_database(db_url, lambda db: _find(db, raw))
    assert (row.account_id, row.allowed_models, row.rpm_limit) == (int(aid), ["claude-haiku-*"], 10)
    assert "No account with id 99" in fails(db_url, "keys", "create", "x", "--account", "99")
    operator = invoke(db_url, "keys", "create", "ops").stdout.strip()  # unchanged without --account
    assert on_database(db_url, lambda db: _find(db, operator)).account_id is None
    assert len(invoke(db_url, "keys", "list", "--account", aid).output.splitlines()) == 2

    credit = invoke(db_url, "credit", "add", aid, "10", "--reference", "inv-1")
    assert "Added $10.00" in credit.stdout and "balance $11.50" in credit.stdout
    assert "-$0.50" in invoke(db_url, "credit", "adjust", aid, "-0.5").stdout
    assert "positive" in fails(db_url, "credit", "add", aid, "0")
    history = invoke(db_url, "credit", "history", aid).output
    assert "adjustment" in history and "topup" in history and "grant" in history

    invoke(
        db_url,
        "prices",
        "set",
        "claude-*",
        "--input",
        "3",
        "--output",
        "15",
        "--cache-write",
        "3.75",
        "--cache-read",
        "0.3",
    )
    invoke(db_url, "prices", "set", "qwen3-32b", "--input", "0.2", "--output", "0.6")
    prices = invoke(db_url, "prices", "list").output.splitlines()
    assert prices[1].split() == ["claude-*", "3.000000", "15.000000", "3.750000", "0.300000"]
    assert (
        json.loads(invoke(db_url, "prices", "list", "--json").output)[1]["cache_read_per_mtok"] == "0.020000"
    )

    made = invoke(db_url, "codes", "create", "--credit-usd", "10", "--count", "5")
    assert len(made.stdout.split()) == 5 and all(c.startswith("CS-") for c in made.stdout.split())
    codes_listed = invoke(db_url, "codes", "list").output
    assert "$10.00" in codes_listed and "0/1" in codes_listed and made.stdout.split()[0] not in codes_listed

    async def add_usage(db: Database) -> None:
        async with db.session() as s:
            for n, model in enumerate(("claude-a", "claude-a", "claude-b")):
                s.add(
                    UsageRecord(
                        request_id=f"req_cli_{n}",
                        created_at=datetime(2026, 7, 1 + n, tzinfo=UTC),
                        key_id=row.id,
                        account_id=int(aid),
                        endpoint="anthropic",
                        model=model,
                        input_tokens=1000,
                        output_tokens=100,
                        cost_nanos=4_500_000,
                        status=200,
                    )
                )
            await s.commit()

    on_database(db_url, add_usage)
    by_model = invoke(db_url, "usage", "show", "--account", aid, "--by", "model").output.splitlines()
    assert by_model[0].split()[:3] == ["MODEL", "REQUESTS", "ERRORS"]
    assert by_model[1].split()[:2] == ["claude-a", "2"] and by_model[-1].split()[:2] == ["TOTAL", "3"]
    by_day = invoke(
        db_url, "usage", "show", "--by", "day", "--from", "2026-07-02", "--to", "2026-07-03", "--json"
    )
    days = json.loads(by_day.output)
    assert [d["day"] for d in days["data"]] == ["2026-07-02", "2026-07-03"] and days["total"][
        "cost_usd"
    ] == "0.009"
    assert "3" in invoke(db_url, "usage", "show", "--key", str(row.id)).output
    assert "claude-b" in invoke(db_url, "usage", "requests", "--limit", "1").output
    assert "from" in fails(db_url, "usage", "show", "--from", "last week")

    # The directly inserted usage was never charged to the balance: reconcile finds it.
    report = invoke(db_url, "usage", "reconcile").output
    assert report.splitlines()[1].split() == [aid, "$11.00", "$10.9865", "$0.0135"] and "--fix" in report
    assert "Fixed 1 of 1 balances" in invoke(db_url, "usage", "reconcile", "--fix").output
    assert "Every balance matches" in invoke(db_url, "usage", "reconcile").output

    shown = invoke(db_url, "accounts", "show", aid).output
    assert "balance: $10.9865" in shown and "plan:    pro" in shown
    invoke(db_url, "accounts", "add-member", aid, "ann@acme.test", "--role", "owner")
    assert "ann@acme.test" in invoke(db_url, "accounts", "members", aid).output
    invoke(db_url, "accounts", "disable", aid)
    assert "disabled" in invoke(db_url, "accounts", "list").output
    assert "balance of $10.9865" in fails(db_url, "accounts", "delete", aid, "--yes")
    invoke(db_url, "accounts", "delete", aid, "--yes", "--force")
    assert "No accounts yet" in invoke(db_url, "accounts", "list").output


async def _find(db: Database, raw: str) -> Any:
    async with db.session() as s:
        return await find_key(s, raw)
