"""``claudestore accounts``: customer accounts, members and subscriptions; ``register`` adds every
operator group (accounts, plans, prices, credit, codes, usage) to the main command."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import accounts as accounts_service
from claudestore.accounts import subscriptions
from claudestore.api import serialize
from claudestore.cli.common import LIVE_CREDIT_NOTE, _call, _cell, _json, _usd, json_option
from claudestore.cli.keys import _database_options, _table, _when


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


def register(main: click.Group) -> None:
    """Add the ``accounts``, ``plans``, ``prices``, ``usage``, ``codes`` and ``credit`` groups."""
    from claudestore.cli.billing import codes, credit, prices
    from claudestore.cli.plans import plans
    from claudestore.cli.usage import usage_group

    for group in (accounts, plans, prices, usage_group, codes, credit):
        main.add_command(group)
