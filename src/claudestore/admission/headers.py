"""Rate-limit headers in the style of the API that was called, from the limiter's windows.

Anthropic (``/v1/messages``): ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``
with RFC 3339 reset times. OpenAI (``/v1/chat/completions``):
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with duration strings (``1s``,
``6m0s``, ``12ms``). Each API's own set only, as the real APIs send them: the other set
would be read by no client of that API and costs a few µs per response to write.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from claudestore.limits.base import Lease

_RESET_TEXT: dict[int, bytes] = {}  # whole second -> RFC 3339 text (reset times are near "now")
_LIMIT_TEXT: dict[int, bytes] = {}  # a limit's digits (limits are few: one per plan and key)
_KEPT = 512


def _second(ts: float) -> int:
    """The whole second of ``ts`` as datetime.fromtimestamp shows it: rounded to the microsecond
    (half even), then the fraction dropped. ``ts - int(ts)`` is exact, and a round half even to
    1,000,000 µs is exactly a fraction of at least 999,999.5 µs."""
    second = int(ts)
    return second + 1 if (ts - second) * 1e6 >= 999_999.5 else second


def _reset_text(ts: float) -> bytes:
    second = _second(ts)
    text = _RESET_TEXT.get(second)
    if text is None:
        if len(_RESET_TEXT) >= _KEPT:
            _RESET_TEXT.clear()
        text = _RESET_TEXT[second] = (
            datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        )
    return text


def _rfc3339(ts: float) -> str:
    """As ``datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")``."""
    return _reset_text(ts).decode()


def _limit_text(limit: int) -> bytes:
    text = _LIMIT_TEXT.get(limit)
    if text is None:
        if len(_LIMIT_TEXT) >= _KEPT:
            _LIMIT_TEXT.clear()
        text = _LIMIT_TEXT[limit] = str(limit).encode()
    return text


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``12ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


# Per style and window: the three header lines, to be filled with the limit, what remains and
# the reset time (each made of digits and the reset text: nothing to escape or check).
_KINDS, _WHAT = (b"requests", b"tokens"), (b"limit", b"remaining", b"reset")


def _template(names: list[bytes]) -> bytes:
    return b"".join(b"%s: %%b\r\n" % name for name in names)


_LINES = {
    "anthropic": tuple(_template([b"anthropic-ratelimit-%b-%b" % (k, w) for w in _WHAT]) for k in _KINDS),
    "openai": tuple(_template([b"x-ratelimit-%b-%b" % (w, k) for w in _WHAT]) for k in _KINDS),
}


def rate_limit_headers(lease: Lease, style: str) -> bytes:
    """The headers of ``lease``'s windows in ``style`` ("anthropic" or "openai"), as encoded
    header lines (``server.raw_head``); ``b""`` when the lease has no window."""
    anthropic = style == "anthropic"
    lines = _LINES[style]
    out = b""
    reset_at, reset = -1.0, b""  # the two windows of one scope share their reset time: made once
    for i, window in ((0, lease.requests), (1, lease.tokens)):
        if window is None:
            continue
        if window.reset_at != reset_at:
            reset_at = window.reset_at
            reset = (
                _reset_text(reset_at) if anthropic else duration(max(0.0, reset_at - time.time())).encode()
            )
        left = window.remaining
        out += lines[i] % (_limit_text(window.limit), str(left).encode() if left > 0 else b"0", reset)
    return out
