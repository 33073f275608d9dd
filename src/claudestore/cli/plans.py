"""``claudestore plans``: plans with their limits, quota, models and price."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from claudestore.accounts import plans as plans_service
from claudestore.api import serialize
from claudestore.cli.common import LIMIT, _call, _cell, _json, _put, _usd, json_option
from claudestore.cli.keys import _database_options, _table, split_patterns


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
