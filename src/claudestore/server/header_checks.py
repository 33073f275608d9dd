"""uvicorn's response-header checks, with what is already known valid remembered.

uvicorn (httptools) checks every header of every response with two regular-expression
searches before it writes them: the name against ``HEADER_RE`` (no separators, spaces or
control characters), the value against ``HEADER_VALUE_RE`` (no control character but
tab). A search costs ~1,700 CPU instructions however short the text (argument parsing and
matcher set-up), and a response of the gateway has 6 to 12 headers (``date`` and
``server`` included), so the checks were 12 to 24 searches per request: ~35,000
instructions, about 5 % of a pass-through request's CPU (callgrind, bench/cpu_per_request.py).

The names come from a small fixed set (the gateway's own constants): a name found valid
once is remembered (up to :data:`NAMES_KEPT`) and later found valid by one set lookup.
A value that is all ASCII digits (limits, counts, lengths) is valid by a C-level
``bytes.isdigit``. Everything else is searched as before, with uvicorn's own patterns:
what is accepted and refused does not change, only what it costs.

:func:`install` replaces the two module-level patterns of
``uvicorn.protocols.http.httptools_impl`` (which uvicorn looks up on every response) with
these stand-ins; it is called in every worker process (``server.app.app_from_env``). If
a uvicorn release no longer has them, it changes nothing and says so (False); the test
suite checks that it still applies.
"""

from __future__ import annotations

import re

NAMES_KEPT = 1024  # distinct header names remembered as valid (the gateway uses a few dozen)


class KnownNames:
    """A stand-in for ``pattern.search`` on header names: names found valid are remembered."""

    __slots__ = ("_search", "_valid")

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self._search = pattern.search
        self._valid: set[bytes] = set()

    def search(self, name: bytes) -> re.Match[bytes] | None:
        if name in self._valid:
            return None
        found = self._search(name)
        if found is None and len(self._valid) < NAMES_KEPT:
            self._valid.add(bytes(name))
        return found


class PlainValues:
    """A stand-in for ``pattern.search`` on header values: all-digit values need no search."""

    __slots__ = ("_search",)

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self._search = pattern.search

    def search(self, value: bytes) -> re.Match[bytes] | None:
        if value.isdigit():  # ASCII digits only, and not empty: no control character
            return None
        return self._search(value)


def install() -> bool:
    """Put the stand-ins in place of uvicorn's patterns (once per process). False: this
    uvicorn has no such patterns (nothing was changed)."""
    try:
        from uvicorn.protocols.http import httptools_impl
    except ImportError:  # httptools missing: uvicorn would not serve with it either
        return False
    names, values = (
        getattr(httptools_impl, "HEADER_RE", None),
        getattr(httptools_impl, "HEADER_VALUE_RE", None),
    )
    if isinstance(names, KnownNames) and isinstance(values, PlainValues):
        return True
    if not isinstance(names, re.Pattern) or not isinstance(values, re.Pattern):
        return False
    httptools_impl.HEADER_RE = KnownNames(names)  # type: ignore[assignment]
    httptools_impl.HEADER_VALUE_RE = PlainValues(values)  # type: ignore[assignment]
    return True
