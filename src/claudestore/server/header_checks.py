"""uvicorn's response-header checks, with what they found valid remembered.

uvicorn (httptools) checks every header of every response with two regular-expression
searches before it writes them: the name against ``HEADER_RE`` (no separators, spaces or
control characters), the value against ``HEADER_VALUE_RE`` (no control character but
tab). A search costs ~1,500 CPU instructions however short the text (argument parsing and
matcher set-up), and a response of the gateway has 8 to 12 headers, so the checks were
16 to 24 searches per request, ~5 % of a pass-through request's instructions (callgrind).

:class:`RememberedSearch` stands in for a pattern: a dictionary of the texts in which the
pattern found nothing, whose ``search`` is the dictionary's own item lookup (C, no Python
frame): a text seen before is valid for ~300 instructions. A text not seen before is
searched with uvicorn's own pattern (:meth:`~RememberedSearch.__missing__`) and remembered
if valid. What is accepted and refused does not change, only what it costs. Names come
from a small fixed set (the gateway's constants); of the values, those that repeat (limits,
reset times, dates, content types) are found again, the others (ids, counts) are searched.
Both stay bounded: past ``kept`` entries the dictionary starts again, and texts longer than
``longest`` are never kept.

:func:`install` replaces the two module-level patterns of
``uvicorn.protocols.http.httptools_impl`` (which uvicorn looks up on every response) with
these stand-ins; it is called in every worker process (``server.app.app_from_env``). If a
uvicorn release no longer has them, it changes nothing and says so (False); the test suite
checks that it still applies. Header names and values must be ``bytes``, as ASGI requires
(a ``bytearray`` is refused with a TypeError, where uvicorn's pattern would take it).
"""

from __future__ import annotations

import re
from typing import Any

NAMES_KEPT = 1024  # distinct header names remembered (the gateway uses a few dozen)
VALUES_KEPT = 4096  # distinct values: once this many are remembered, start again
LONGEST_KEPT = 128  # bytes: a longer text is searched every time


class RememberedSearch(dict[bytes, None]):
    """``pattern.search`` for texts to be found *valid* (no match): ``search(text)`` is None
    for a valid text, the match for an invalid one."""

    def __init__(self, pattern: re.Pattern[bytes], kept: int, longest: int = LONGEST_KEPT) -> None:
        super().__init__()
        self.pattern = pattern
        self.kept = kept
        self.longest = longest
        self.search = self.__getitem__  # found: the stored None; not found: __missing__

    def __missing__(self, text: bytes) -> re.Match[bytes] | None:
        found = self.pattern.search(text)
        if found is None and len(text) <= self.longest:
            if len(self) >= self.kept:
                self.clear()
            self[bytes(text)] = None
        return found


def install() -> bool:
    """Put the stand-ins in place of uvicorn's patterns (once per process). False: this
    uvicorn has no such patterns (nothing was changed)."""
    try:
        from uvicorn.protocols.http import httptools_impl
    except ImportError:  # httptools missing: uvicorn would not serve with it either
        return False
    module: Any = httptools_impl
    names, values = getattr(module, "HEADER_RE", None), getattr(module, "HEADER_VALUE_RE", None)
    if isinstance(names, RememberedSearch) and isinstance(values, RememberedSearch):
        return True
    if not isinstance(names, re.Pattern) or not isinstance(values, re.Pattern):
        return False
    module.HEADER_RE = RememberedSearch(names, NAMES_KEPT)
    module.HEADER_VALUE_RE = RememberedSearch(values, VALUES_KEPT)
    return True
