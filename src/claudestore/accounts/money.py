"""Money and billing periods.

Money is integer nano-dollars (1e-9 USD). USD amounts come in as decimals (JSON
numbers, strings such as ``"12.50"``, CLI arguments) and are converted exactly; an
amount finer than one nano-dollar is refused rather than rounded.

Billing periods are calendar periods: a day, 7 days, a calendar **month** (31 January
+ 1 month = 28/29 February, the day clamped to the month's length) or a calendar
year (29 February + 1 year = 28 February). Months are not "30 days", so a monthly
plan renews on the same day of the month.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from claudestore.accounts import fields
from claudestore.core.errors import InvalidRequest

NANOS_PER_USD = 1_000_000_000
PERIODS = ("day", "week", "month", "year")
#: The largest single credit change: one billion dollars (keeps BIGINT sums far from overflow).
MAX_CREDIT_USD = Decimal(1_000_000_000)


def usd_to_nanos(value: Any, field: str = "usd", *, allow_negative: bool = False) -> int:
    """USD (a number or a decimal string) → nano-dollars, exactly."""
    limit = MAX_CREDIT_USD
    amount = fields.decimal(
        value, field, minimum=-limit if allow_negative else Decimal(0), places=9, maximum=limit
    )
    return int(amount * NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_USD


def format_usd(nanos: int) -> str:
    """``12500000000`` → ``"12.50"``; sub-cent amounts keep their digits (``"0.000003"``)."""
    text = f"{nanos_to_usd(nanos):.9f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def credit_nanos(
    data: dict[str, Any], *, usd_field: str, nanos_field: str, allow_negative: bool = False
) -> int:
    """An amount given either as USD (``usd_field``) or nano-dollars (``nanos_field``)."""
    usd, nanos = data.get(usd_field), data.get(nanos_field)
    if usd is not None and nanos is not None:
        raise InvalidRequest(f"Give {usd_field} or {nanos_field}, not both", param=nanos_field)
    if nanos is not None:
        bound = int(MAX_CREDIT_USD) * NANOS_PER_USD
        return fields.integer(nanos, nanos_field, minimum=-bound if allow_negative else 0, maximum=bound)
    if usd is not None:
        return usd_to_nanos(usd, usd_field, allow_negative=allow_negative)
    return 0


def add_period(start: datetime, period: str, count: int = 1) -> datetime:
    """``start`` moved forward by ``count`` billing periods (calendar months and years)."""
    if period == "day":
        return start + timedelta(days=count)
    if period == "week":
        return start + timedelta(weeks=count)
    if period == "month":
        return _add_months(start, count)
    if period == "year":
        return _add_months(start, 12 * count)
    raise InvalidRequest(f"period: must be one of {', '.join(PERIODS)} (got {period!r})", param="period")


def _add_months(start: datetime, months: int) -> datetime:
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)
