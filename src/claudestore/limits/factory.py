"""Choose the limiter backend: Redis when a URL is configured, else the in-process one."""

from __future__ import annotations

from claudestore.limits.base import Limiter
from claudestore.limits.memory import MemoryLimiter


def make_limiter(redis_url: str | None, prefix: str = "cs:") -> Limiter:
    """A :class:`RedisLimiter` on ``redis_url`` (shared by every gateway process), or a
    :class:`MemoryLimiter` when it is None (one process only)."""
    if redis_url is None:
        return MemoryLimiter()
    from claudestore.limits.redis import RedisLimiter  # redis is only needed when configured

    return RedisLimiter(redis_url, prefix=prefix)
