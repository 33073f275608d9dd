"""Rate-limit headers in both APIs' styles, from the limiter's windows.

Anthropic: ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` with RFC 3339
reset times. OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with
duration strings (``1s``, ``6m0s``, ``12ms``). Both sets go on every response of a
limited key, whichever API was called, so tools written for either can read them.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from claudestore.limits.base import Lease, Window

_RESET_TEXT: dict[int, str] = {}  # whole second -> RFC 3339 text (reset times are near "now")


def _rfc3339(ts: float) -> str:
    # As datetime.fromtimestamp(ts, UTC).strftime(...): round to the microsecond (half even),
    # then drop the fraction; the text of each whole second is made once.
    frac, whole = math.modf(ts)
    second = int(whole) + (round(frac * 1e6) >= 1_000_000)
    text = _RESET_TEXT.get(second)
    if text is None:
        if len(_RESET_TEXT) >= 512:
            _RESET_TEXT.clear()
        text = _RESET_TEXT[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``12ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


_NAMES = {
    kind: (
        f"anthropic-ratelimit-{kind}-limit",
        f"anthropic-ratelimit-{kind}-remaining",
        f"anthropic-ratelimit-{kind}-reset",
        f"x-ratelimit-limit-{kind}",
        f"x-ratelimit-remaining-{kind}",
        f"x-ratelimit-reset-{kind}",
    )
    for kind in ("requests", "tokens")
}


def _window(headers: dict[str, str], kind: str, window: Window, now: float) -> None:
    a_limit, a_remaining, a_reset, x_limit, x_remaining, x_reset = _NAMES[kind]
    limit = str(window.limit)
    remaining = str(window.remaining) if window.remaining > 0 else "0"
    headers[a_limit] = limit
    headers[a_remaining] = remaining
    headers[a_reset] = _rfc3339(window.reset_at)
    headers[x_limit] = limit
    headers[x_remaining] = remaining
    headers[x_reset] = duration(max(0.0, window.reset_at - now))


def rate_limit_headers(lease: Lease, headers: dict[str, str]) -> None:
    now = time.time()
    if lease.requests is not None:
        _window(headers, "requests", lease.requests, now)
    if lease.tokens is not None:
        _window(headers, "tokens", lease.tokens, now)
