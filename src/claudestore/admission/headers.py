"""Rate-limit headers in both APIs' styles, from the limiter's windows.

Anthropic: ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` with RFC 3339
reset times. OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with
duration strings (``1s``, ``6m0s``, ``12ms``). Both sets go on every response of a
limited key, whichever API was called, so tools written for either can read them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from claudestore.limits.base import Lease, Window


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``12ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _window(headers: dict[str, str], kind: str, window: Window, now: float) -> None:
    headers[f"anthropic-ratelimit-{kind}-limit"] = str(window.limit)
    headers[f"anthropic-ratelimit-{kind}-remaining"] = str(max(0, window.remaining))
    headers[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(window.reset_at)
    headers[f"x-ratelimit-limit-{kind}"] = str(window.limit)
    headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, window.remaining))
    headers[f"x-ratelimit-reset-{kind}"] = duration(max(0.0, window.reset_at - now))


def rate_limit_headers(lease: Lease, headers: dict[str, str]) -> None:
    now = time.time()
    if lease.requests is not None:
        _window(headers, "requests", lease.requests, now)
    if lease.tokens is not None:
        _window(headers, "tokens", lease.tokens, now)
