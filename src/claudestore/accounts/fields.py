"""Input checking shared by the services: one function per kind of field.

Every checker takes the raw value (from JSON, a CLI option or Python) and the field's
name, and raises :class:`~claudestore.core.errors.InvalidRequest` naming the field
(``param``) when the value has the wrong type or range. ``bool`` is never accepted
where a number is expected, although Python treats it as an ``int``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from claudestore.core.errors import GatewayError, InvalidRequest

#: A generous upper bound for counts and limits (fits a 32-bit ``Integer`` column).
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Conflict(GatewayError):
    """The request clashes with the current state (a duplicate name, a used-up code)."""

    status, kind = 409, "conflict_error"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _bad(field: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{field}: expected {expected}, got {_type_name(value)}", param=field)


def reject_unknown(data: Mapping[str, Any], allowed: Iterable[str], where: str = "body") -> None:
    """400 naming the first field that is not one of ``allowed`` (catches typos early)."""
    known = set(allowed)
    for name in data:
        if name not in known:
            raise InvalidRequest(
                f"{where}: unknown field {name!r} (allowed: {', '.join(sorted(known))})", param=name
            )


def text(value: Any, field: str, *, max_len: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _bad(field, "a string", value)
    value = value.strip()
    if not value and not allow_empty:
        raise InvalidRequest(f"{field}: must not be empty", param=field)
    if len(value) > max_len:
        raise InvalidRequest(f"{field}: at most {max_len} characters (got {len(value)})", param=field)
    if "\x00" in value:  # PostgreSQL's text type cannot hold NUL
        raise InvalidRequest(f"{field}: must not contain the NUL character (U+0000)", param=field)
    return value


def optional_text(value: Any, field: str, *, max_len: int) -> str | None:
    if value is None:
        return None
    return text(value, field, max_len=max_len, allow_empty=True) or None


def email(value: Any, field: str = "email") -> str:
    value = text(value, field, max_len=320).lower()
    if not _EMAIL.match(value):
        raise InvalidRequest(f"{field}: {value!r} is not an email address", param=field)
    return value


def optional_email(value: Any, field: str = "email") -> str | None:
    return None if value is None or value == "" else email(value, field)


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(field, "true or false", value)
    return value


def integer(value: Any, field: str, *, minimum: int = 0, maximum: int = MAX_INT32) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, "an integer", value)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{field}: must be between {minimum} and {maximum} (got {value})", param=field)
    return value


def optional_limit(value: Any, field: str) -> int | None:
    """A rate or size limit: a positive integer, or null for "no limit"."""
    return None if value is None else integer(value, field, minimum=1)


def choice(value: Any, field: str, options: Iterable[str]) -> str:
    allowed = tuple(options)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(f"{field}: must be one of {', '.join(allowed)} (got {value!r})", param=field)
    return value


def decimal(
    value: Any, field: str, *, minimum: Decimal = Decimal(0), places: int, maximum: Decimal
) -> Decimal:
    """A non-negative decimal number from a JSON number or a string such as ``"3.75"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise _bad(field, "a number", value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(f"{field}: {value!r} is not a number", param=field) from None
    if not number.is_finite():
        raise InvalidRequest(f"{field}: must be a finite number", param=field)
    if not minimum <= number <= maximum:
        raise InvalidRequest(f"{field}: must be between {minimum} and {maximum} (got {number})", param=field)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise InvalidRequest(f"{field}: at most {places} decimal places (got {number})", param=field)
    return number


def patterns(value: Any, field: str = "allowed_models") -> list[str]:
    """A list of fnmatch model patterns such as ``["claude-*", "qwen3-32b"]``."""
    if not isinstance(value, list):
        raise _bad(field, "a list of model patterns", value)
    result: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise InvalidRequest(
                f"{field}[{i}]: expected a non-empty string, got {_type_name(item)}", param=field
            )
        if len(item) > 200:
            raise InvalidRequest(f"{field}[{i}]: at most 200 characters", param=field)
        if "\x00" in item:
            raise InvalidRequest(f"{field}[{i}]: must not contain the NUL character (U+0000)", param=field)
        if item.strip() not in result:
            result.append(item.strip())
    if not result:
        raise InvalidRequest(f'{field}: give at least one pattern (use ["*"] for every model)', param=field)
    return result


def optional_patterns(value: Any, field: str = "allowed_models") -> list[str] | None:
    return None if value is None else patterns(value, field)


def timestamp(value: Any, field: str) -> datetime:
    """An ISO 8601 time (``2026-01-31T12:00:00Z``) or date (midnight UTC); naive means UTC."""
    if isinstance(value, datetime):
        return _to_utc(value, field, value)
    if not isinstance(value, str):
        raise _bad(field, "an ISO 8601 date or time", value)
    raw = value.strip()
    if "T" in raw:  # a "+02:00" offset arrives as " 02:00" when "+" was not escaped in a query string
        raw = raw.replace(" ", "+")
    try:
        parsed = (
            datetime.combine(date.fromisoformat(raw), time(), UTC)
            if len(raw) == 10
            else datetime.fromisoformat(raw.replace("Z", "+00:00"))
        )
    except ValueError:
        raise InvalidRequest(
            f"{field}: {value!r} is not an ISO 8601 date or time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)",
            param=field,
        ) from None
    return _to_utc(parsed, field, value)


def _to_utc(parsed: datetime, field: str, value: Any) -> datetime:
    """``parsed`` in UTC (naive means UTC); 400 if the offset moves it past year 1 or 9999."""
    if not parsed.tzinfo:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest(
            f"{field}: {value!r} is outside the supported range of dates (years 1 to 9999 in UTC)",
            param=field,
        ) from None


def expiry(data: Mapping[str, Any], now: datetime) -> datetime | None:
    """``expires_at`` (a time) or ``expires_in_days`` (a count), at most one of them."""
    at, days = data.get("expires_at"), data.get("expires_in_days")
    if at is not None and days is not None:
        raise InvalidRequest("Give expires_at or expires_in_days, not both", param="expires_in_days")
    if days is not None:
        return now + timedelta(days=integer(days, "expires_in_days", minimum=1, maximum=36500))
    if at is None:
        return None
    when = timestamp(at, "expires_at")
    if when <= now:
        raise InvalidRequest("expires_at: must be in the future", param="expires_at")
    return when
