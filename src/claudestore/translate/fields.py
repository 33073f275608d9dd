"""Typed field access shared by the request parsers of both wire formats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from claudestore.core.errors import InvalidRequest

WHAT = {str: "a string", bool: "a boolean", list: "a list", dict: "an object", int: "an integer"}


def typed(
    obj: dict[str, Any],
    key: str,
    kind: type,
    param: str,
    fail: Callable[[str, str], InvalidRequest],
    verb: str,
    what: dict[type, str] = WHAT,
) -> Any:
    """``obj[key]`` if present and not null, checked to be a ``kind`` (float: any number);
    a wrong type raises ``fail(param, f"{verb} <kind>, got <type>")``."""
    value = obj.get(key)
    if value is None:
        return None
    types: Any = (int, float) if kind is float else kind
    if not isinstance(value, types) or (isinstance(value, bool) and kind is not bool):
        raise fail(param, f"{verb} {what.get(kind, 'a number')}, got {type(value).__name__}")
    return value
