"""Limiter fixtures: every test that takes ``limiter_factory`` runs on memory and on Redis.

Import the fixtures into the test module explicitly
(``from tests.support.redis import limiter_factory``).

* ``memory``: a fresh :class:`MemoryLimiter`.
* ``redis``: a :class:`RedisLimiter` on ``$CLAUDESTORE_TEST_REDIS_URL`` (default
  ``redis://127.0.0.1:6379/15``) with a unique random key prefix per test, whose keys are
  deleted afterwards. If the server cannot be reached the test is skipped, or fails when
  ``CLAUDESTORE_REQUIRE_SERVICES=1`` (as in CI) — the convention of ``tests.support.databases``.

``limiter`` is ``limiter_factory()``. ``limiter_factory(**options)`` makes a limiter
(options such as ``window`` or ``lease_ttl`` go to the constructor); every limiter it
made is closed after the test. ``redis_limiter_factory`` is the same, on Redis only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from claudestore.limits.base import Limiter
from claudestore.limits.memory import MemoryLimiter
from claudestore.limits.redis import RedisLimiter

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
CONNECT_TIMEOUT = 3.0

_unreachable: dict[str, str] = {}  # URL -> reason, so a dead server costs one timeout per run


def services_required() -> bool:
    return os.environ.get("CLAUDESTORE_REQUIRE_SERVICES") == "1"


def redis_url() -> str:
    return os.environ.get("CLAUDESTORE_TEST_REDIS_URL", DEFAULT_REDIS_URL)


async def require_redis(url: str) -> None:
    """Return if Redis answers PING at ``url``; otherwise skip (or fail when services are required)."""
    reason = _unreachable.get(url)
    if reason is None:
        client = aioredis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
        try:
            await client.ping()
            return
        except (OSError, TimeoutError, RedisError) as exc:
            reason = f"Redis not reachable at {url} ({exc.__class__.__name__}: {exc})"
            _unreachable[url] = reason
        finally:
            await client.aclose()
    if services_required():
        pytest.fail(reason)
    pytest.skip(f"{reason}; set CLAUDESTORE_REQUIRE_SERVICES=1 to make this a failure")


async def delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass
class LimiterFactory:
    backend: str  # "memory" or "redis"
    url: str = ""  # the Redis URL ("" for memory)
    prefix: str = ""  # the Redis key prefix of this test
    made: list[Limiter] = field(default_factory=list)

    def __call__(self, **options: Any) -> Limiter:
        limiter: Limiter
        if self.backend == "memory":
            limiter = MemoryLimiter(**options)
        else:
            limiter = RedisLimiter(self.url, prefix=self.prefix, **options)
        self.made.append(limiter)
        return limiter


@asynccontextmanager
async def limiter_backend(backend: str) -> AsyncIterator[LimiterFactory]:
    if backend == "memory":
        factory = LimiterFactory("memory")
    else:
        url = redis_url()
        await require_redis(url)
        factory = LimiterFactory("redis", url, f"cs-test-{secrets.token_hex(6)}:")
    try:
        yield factory
    finally:
        for limiter in factory.made:
            await limiter.close()
        if factory.backend == "redis":
            await delete_prefix(factory.url, factory.prefix)


@pytest_asyncio.fixture(params=["memory", "redis"], loop_scope="session")
async def limiter_factory(request: pytest.FixtureRequest) -> AsyncIterator[LimiterFactory]:
    async with limiter_backend(request.param) as factory:
        yield factory


@pytest.fixture
def limiter(limiter_factory: LimiterFactory) -> Limiter:
    """A limiter with the default options, on each backend."""
    return limiter_factory()


@pytest_asyncio.fixture(loop_scope="session")
async def redis_limiter_factory() -> AsyncIterator[LimiterFactory]:
    async with limiter_backend("redis") as factory:
        yield factory
