"""Helpers shared by the operator CLI groups (tables, JSON output, service calls)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts.money import format_usd
from claudestore.cli.keys import _run
from claudestore.core.errors import GatewayError

T = TypeVar("T")

LIVE_CREDIT_NOTE = (
    "note: a running gateway delivers this credit to its live balance within about a second "
    "(it polls new credit entries)."
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
