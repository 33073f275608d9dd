"""Rate-limit headers in the style of the API that was called, from the limiter's windows.

Anthropic (``/v1/messages``): ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``
with RFC 3339 reset times. OpenAI (``/v1/chat/completions``):
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with duration strings (``1s``,
``6m0s``, ``12ms``). Each API's own set only, as the real APIs send them: the other set
would be read by no client of that API and costs a few µs per response to write.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from claudestore.limits.base import Lease

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
    ("anthropic", kind): (
        f"anthropic-ratelimit-{kind}-limit",
        f"anthropic-ratelimit-{kind}-remaining",
        f"anthropic-ratelimit-{kind}-reset",
    )
    for kind in ("requests", "tokens")
} | {
    ("openai", kind): (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
    for kind in ("requests", "tokens")
}


def rate_limit_headers(lease: Lease, headers: dict[str, str], style: str) -> None:
    """Add the headers of ``lease``'s windows to ``headers`` in ``style`` ("anthropic" or "openai")."""
    anthropic = style == "anthropic"
    now = 0.0 if anthropic else time.time()
    reset_at, reset = -1.0, ""  # the two windows of one scope share their reset time: format it once
    for kind, window in (("requests", lease.requests), ("tokens", lease.tokens)):
        if window is None:
            continue
        limit, remaining, reset_name = _NAMES[style, kind]
        headers[limit] = str(window.limit)
        headers[remaining] = str(window.remaining) if window.remaining > 0 else "0"
        if window.reset_at != reset_at:
            reset_at = window.reset_at
            reset = _rfc3339(reset_at) if anthropic else duration(max(0.0, reset_at - now))
        headers[reset_name] = reset
