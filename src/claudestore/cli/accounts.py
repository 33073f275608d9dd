"""``claudestore accounts | plans | prices | usage | codes | credit``: the admin API's
operations from the command line. Each command is one transaction over the database
named by ``--database-url`` / ``--config`` (migrated first), like ``claudestore keys``.

Call :func:`register` with the ``claudestore`` group to add these groups.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import accounts as accounts_service
from claudestore.accounts import codes as codes_service
from claudestore.accounts import credit as credit_service
from claudestore.accounts import plans as plans_service
from claudestore.accounts import prices as prices_service
from claudestore.accounts import subscriptions, usage
from claudestore.accounts.money import format_usd, usd_to_nanos
from claudestore.api import serialize
from claudestore.cli.keys import _database_options, _run, _run_db, _table, _when, split_patterns
from claudestore.core.errors import GatewayError
from claudestore.storage.db import Database

T = TypeVar("T")

LIVE_CREDIT_NOTE = (
    "note: a running gateway keeps a live balance seeded once from the database, so it does not "
    "see credit changed here until that counter is re-seeded; while it runs, prefer the admin API "
    "(POST /admin/accounts/ID/credit), which credits the live counter at once."
)


def _call(
    database_url: str | None, config_path: str | None, work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    try:
        return _run(database_url, config_path, work)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None


def _json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _usd(nanos: int) -> str:
    text = format_usd(nanos)
    return "-$" + text[1:] if text.startswith("-") else "$" + text


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


CLEAR = object()  # "remove this limit", from --rpm none


class _Limit(click.ParamType):
    """A positive integer, or ``none`` to remove the limit."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value is CLEAR:
            return value
        if str(value).lower() in ("none", "unlimited"):
            return CLEAR
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'none'", param, ctx)
        if number < 1:
            self.fail("must be at least 1 (or 'none')", param, ctx)
        return number


LIMIT = _Limit()


def _put(data: dict[str, Any], name: str, value: Any) -> None:
    """Add an option that was given; ``CLEAR`` becomes null."""
    if value is not None:
        data[name] = None if value is CLEAR else value


# -- accounts ------------------------------------------------------------------------------------


@click.group("accounts")
def accounts() -> None:
    """Create and manage customer accounts, their members and subscriptions."""


@accounts.command("create")
@click.argument("name")
@click.option("--email", help="Contact email of the account.")
@click.option("--kind", type=click.Choice(accounts_service.KINDS), default="person", show_default=True)
@json_option
@_database_options
def accounts_create(
    name: str, email: str | None, kind: str, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Create an account called NAME."""
    data = {"name": name, "kind": kind, **({"email": email} if email else {})}
    row = _call(database_url, config_path, lambda s: accounts_service.create_account(s, data))
    if as_json:
        _json(serialize.account(row))
    else:
        click.echo(f"Created account {row.id} {row.name!r}.")
        click.echo(
            f"Next: claudestore accounts subscribe {row.id} PLAN, then keys create NAME --account {row.id}"
        )


@accounts.command("list")
@click.option("--active-only", is_flag=True, help="Hide disabled accounts.")
@json_option
@_database_options
def accounts_list(
    active_only: bool, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """List accounts with their balance and plan."""

    async def work(session: AsyncSession) -> list[tuple[Any, Any]]:
        rows = await accounts_service.list_accounts(session, include_disabled=not active_only, limit=100_000)
        return [(a, await subscriptions.active(session, a.id)) for a in rows]

    rows = _call(database_url, config_path, work)
    if as_json:
        _json([{**serialize.account(a), "plan": current[1].name if current else None} for a, current in rows])
        return
    if not rows:
        click.echo("No accounts yet. Create one with: claudestore accounts create NAME")
        return
    header = ("ID", "NAME", "KIND", "EMAIL", "BALANCE", "PLAN", "STATUS", "CREATED")
    body = [
        (
            str(a.id),
            a.name,
            a.kind,
            _cell(a.email),
            _usd(a.balance_nanos),
            current[1].name if current else "-",
            "disabled" if a.disabled_at else "active",
            _when(a.created_at),
        )
        for a, current in rows
    ]
    click.echo(_table(header, body))


@accounts.command("show")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@json_option
@_database_options
def accounts_show(account_id: int, as_json: bool, config_path: str | None, database_url: str | None) -> None:
    """Show one account: balance, plan, members."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await accounts_service.get_account(session, account_id)
        current = await subscriptions.active(session, account_id)
        members = await accounts_service.list_members(session, account_id)
        return {
            **serialize.account(row),
            "plan": serialize.plan(current[1]) if current else None,
            "subscription": serialize.subscription(*current) if current else None,
            "members": [serialize.member(m) for m in members],
        }

    info = _call(database_url, config_path, work)
    if as_json:
        _json(info)
        return
    click.echo(f"Account {info['id']} {info['name']!r} ({info['kind']}, {info['status']})")
    click.echo(f"  email:   {_cell(info['email'])}")
    click.echo(f"  balance: ${info['balance']['usd']}")
    sub = info["subscription"]
    if sub:
        click.echo(f"  plan:    {info['plan']['name']} until {_when(sub['period_end'])} UTC")
    else:
        click.echo("  plan:    none (its keys are refused until it subscribes)")
    for m in info["members"]:
        click.echo(f"  member:  {m['email']} ({m['role']})")


@accounts.command("update")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.option("--name")
@click.option("--email", help="New contact email ('' removes it).")
@click.option("--kind", type=click.Choice(accounts_service.KINDS))
@_database_options
def accounts_update(
    account_id: int,
    name: str | None,
    email: str | None,
    kind: str | None,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Rename an account or change its email or kind."""
    data = {k: v for k, v in {"name": name, "email": email, "kind": kind}.items() if v is not None}
    if not data:
        raise click.UsageError("Nothing to change: give --name, --email or --kind.")
    row = _call(database_url, config_path, lambda s: accounts_service.update_account(s, account_id, data))
    click.echo(f"Updated account {row.id} {row.name!r}.")


@accounts.command("disable")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@_database_options
def accounts_disable(account_id: int, config_path: str | None, database_url: str | None) -> None:
    """Disable an account: its keys are refused (within the gateway's cache TTL)."""
    row = _call(database_url, config_path, lambda s: accounts_service.set_disabled(s, account_id, True))
    click.echo(f"Disabled account {row.id} {row.name!r}.")


@accounts.command("enable")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@_database_options
def accounts_enable(account_id: int, config_path: str | None, database_url: str | None) -> None:
    """Re-enable a disabled account."""
    row = _call(database_url, config_path, lambda s: accounts_service.set_disabled(s, account_id, False))
    click.echo(f"Enabled account {row.id} {row.name!r}.")


@accounts.command("delete")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.option("--force", is_flag=True, help="Also when it holds money: drops its credit history.")
@click.confirmation_option(prompt="Delete the account with its keys, members and subscriptions?")
@_database_options
def accounts_delete(account_id: int, force: bool, config_path: str | None, database_url: str | None) -> None:
    """Delete an account (the usage ledger keeps its rows). Prefer disable."""
    _call(database_url, config_path, lambda s: accounts_service.delete_account(s, account_id, force=force))
    click.echo(f"Deleted account {account_id}.")


@accounts.command("subscribe")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.argument("plan", metavar="PLAN")
@json_option
@_database_options
def accounts_subscribe(
    account_id: int, plan: str, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Put ACCOUNT on PLAN (id or name) from now, replacing its current plan. Does not charge."""
    result = _call(database_url, config_path, lambda s: subscriptions.subscribe(s, account_id, plan))
    if as_json:
        _json(
            {
                "subscription": serialize.subscription(result.subscription, result.plan),
                "grant": serialize.credit_entry(result.grant) if result.grant else None,
            }
        )
        return
    sub = result.subscription
    click.echo(f"Account {account_id} is on plan {result.plan.name!r} until {_when(sub.period_end)} UTC.")
    if result.replaced:
        click.echo("Its previous subscription was cancelled.")
    if result.grant:
        click.echo(f"Granted {_usd(result.grant.amount_nanos)} of included credit.")
        click.echo(LIVE_CREDIT_NOTE, err=True)


@accounts.command("unsubscribe")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@_database_options
def accounts_unsubscribe(account_id: int, config_path: str | None, database_url: str | None) -> None:
    """Cancel the account's active subscription now."""
    _call(database_url, config_path, lambda s: subscriptions.cancel(s, account_id))
    click.echo(f"Cancelled the subscription of account {account_id}.")


@accounts.command("members")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@json_option
@_database_options
def accounts_members(
    account_id: int, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """List the members of an account."""
    rows = _call(database_url, config_path, lambda s: accounts_service.list_members(s, account_id))
    if as_json:
        _json([serialize.member(m) for m in rows])
        return
    body = [(str(m.user.id), m.user.email, _cell(m.user.name), m.membership.role) for m in rows]
    click.echo(_table(("USER", "EMAIL", "NAME", "ROLE"), body) if body else "No members.")


@accounts.command("add-member")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.argument("email")
@click.option("--role", type=click.Choice(accounts_service.ROLES), default="member", show_default=True)
@click.option("--name", help="The person's name (for a new user).")
@_database_options
def accounts_add_member(
    account_id: int,
    email: str,
    role: str,
    name: str | None,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Add the user with EMAIL (created if new) to ACCOUNT, or change their role."""
    data = {"email": email, "role": role, **({"name": name} if name else {})}
    member, created = _call(
        database_url, config_path, lambda s: accounts_service.add_member(s, account_id, data)
    )
    verb = "Added" if created else "Updated"
    click.echo(f"{verb} {member.user.email} as {member.membership.role} of account {account_id}.")


@accounts.command("remove-member")
@click.argument("account_id", metavar="ACCOUNT", type=int)
@click.argument("user", metavar="EMAIL_OR_USER_ID")
@_database_options
def accounts_remove_member(
    account_id: int, user: str, config_path: str | None, database_url: str | None
) -> None:
    """Remove a member from ACCOUNT (the user record is kept)."""
    member = _call(database_url, config_path, lambda s: accounts_service.remove_member(s, account_id, user))
    click.echo(f"Removed {member.user.email} from account {account_id}.")


# -- plans ---------------------------------------------------------------------------------------


def _plan_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--description"),
        click.option("--price", help="Price per period in USD, e.g. 20 or 19.99."),
        click.option("--period", type=click.Choice(("day", "week", "month", "year"))),
        click.option("--rpm", type=LIMIT, help="Requests per minute ('none' removes the limit)."),
        click.option("--tpm", type=LIMIT, help="Input + output tokens per minute."),
        click.option("--concurrency", type=LIMIT, help="Requests in flight."),
        click.option("--quota-tokens", type=LIMIT, help="Tokens per period."),
        click.option("--credit-usd", help="Credit granted on subscribing, in USD."),
        click.option(
            "--models", multiple=True, metavar="PATTERNS", help="Allowed models, fnmatch (e.g. 'claude-*')."
        ),
        click.option("--multiplier", help="Price multiplier on model prices (1 = list price)."),
        click.option("--trial/--no-trial", default=None, help="Mark as a trial plan."),
        click.option("--public/--private", default=None, help="Offered to customers (default public)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _plan_data(options: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    renames = {
        "description": "description",
        "price": "price_usd",
        "period": "period",
        "rpm": "rpm",
        "tpm": "tpm",
        "concurrency": "max_concurrency",
        "quota_tokens": "quota_tokens",
        "credit_usd": "included_credit_usd",
        "multiplier": "price_multiplier",
        "trial": "trial",
        "public": "public",
    }
    for option, field in renames.items():
        _put(data, field, options.get(option))
    patterns = split_patterns(options.get("models") or ())
    if patterns:
        data["allowed_models"] = patterns
    return data


def _plan_summary(plan: Any) -> str:
    parts = [f"${plan.price_usd}/{plan.period}"]
    for value, unit in ((plan.rpm, "rpm"), (plan.tpm, "tpm"), (plan.max_concurrency, "concurrent")):
        if value:
            parts.append(f"{value} {unit}")
    if plan.quota_tokens:
        parts.append(f"{plan.quota_tokens} tokens/{plan.period}")
    if plan.included_credit_nanos:
        parts.append(f"{_usd(plan.included_credit_nanos)} credit")
    parts.append("models " + ",".join(plan.allowed_models))
    return ", ".join(parts)


@click.group("plans")
def plans() -> None:
    """Create and manage plans: limits, quota, allowed models, price."""


@plans.command("create")
@click.argument("name")
@_plan_options
@json_option
@_database_options
def plans_create(
    name: str, as_json: bool, config_path: str | None, database_url: str | None, **options: Any
) -> None:
    """Create a plan called NAME (defaults: monthly, free, no limits, every model)."""
    data = {"name": name, **_plan_data(options)}
    row = _call(database_url, config_path, lambda s: plans_service.create_plan(s, data))
    if as_json:
        _json(serialize.plan(row))
    else:
        click.echo(f"Created plan {row.id} {row.name!r}: {_plan_summary(row)}.")


@plans.command("update")
@click.argument("plan", metavar="PLAN")
@click.option("--name", "new_name", help="Rename the plan.")
@click.option("--restore", is_flag=True, help="Un-archive the plan.")
@_plan_options
@_database_options
def plans_update(
    plan: str,
    new_name: str | None,
    restore: bool,
    config_path: str | None,
    database_url: str | None,
    **options: Any,
) -> None:
    """Change a plan (id or name); changes apply to current subscribers too."""
    data = _plan_data(options)
    if new_name:
        data["name"] = new_name
    if restore:
        data["archived"] = False
    if not data:
        raise click.UsageError("Nothing to change; see --help for the options.")
    row = _call(database_url, config_path, lambda s: plans_service.update_plan(s, plan, data))
    click.echo(f"Updated plan {row.id} {row.name!r}: {_plan_summary(row)}.")


@plans.command("list")
@click.option("--all", "include_archived", is_flag=True, help="Include archived plans.")
@json_option
@_database_options
def plans_list(
    include_archived: bool, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """List plans."""
    rows = _call(
        database_url, config_path, lambda s: plans_service.list_plans(s, include_archived=include_archived)
    )
    if as_json:
        _json([serialize.plan(p) for p in rows])
        return
    if not rows:
        click.echo("No plans yet. Create one with: claudestore plans create NAME --rpm 60 --price 20")
        return
    header = ("ID", "NAME", "PRICE", "RPM", "TPM", "CONC", "QUOTA", "CREDIT", "MODELS", "FLAGS")
    body = [
        (
            str(p.id),
            p.name,
            f"${p.price_usd}/{p.period}",
            _cell(p.rpm),
            _cell(p.tpm),
            _cell(p.max_concurrency),
            _cell(p.quota_tokens),
            _usd(p.included_credit_nanos),
            ",".join(p.allowed_models),
            ",".join(
                f
                for f, on in (("trial", p.trial), ("private", not p.public), ("archived", p.archived_at))
                if on
            )
            or "-",
        )
        for p in rows
    ]
    click.echo(_table(header, body))


@plans.command("delete")
@click.argument("plan", metavar="PLAN")
@_database_options
def plans_delete(plan: str, config_path: str | None, database_url: str | None) -> None:
    """Delete a plan, or archive it when subscriptions or codes refer to it."""
    row, action = _call(database_url, config_path, lambda s: plans_service.delete_plan(s, plan))
    click.echo(f"{action.capitalize()} plan {row.id} {row.name!r}.")


# -- prices --------------------------------------------------------------------------------------


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


def register(main: click.Group) -> None:
    """Add the ``accounts``, ``plans``, ``prices``, ``usage``, ``codes`` and ``credit`` groups."""
    for group in (accounts, plans, prices, usage_group, codes, credit):
        main.add_command(group)
