"""Shared fixtures: databases (both backends), the fake upstream, a running gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from tests.support.servers import FakeUpstream, Gateway, start_fake_upstream, start_gateway, stop
from tests.support.upstream_log import UpstreamLog

pytest_plugins = ["tests.support.databases", "tests.support.sse"]

# Helpers with asserts, imported by the test modules: rewritten like the tests' own asserts.
pytest.register_assert_rewrite("tests.support.accounts", "tests.support.e2e_http", "tests.support.routing")

if TYPE_CHECKING:
    import anthropic
    import openai


@pytest.fixture(scope="session")
def fake_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    upstream = start_fake_upstream(tmp_path_factory.mktemp("fake-upstream"))
    yield upstream
    stop(upstream.proc)


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=["sqlite", "postgres"])
async def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    """A gateway process in front of the fake upstream, on SQLite and on PostgreSQL."""
    tmp: Path = tmp_path_factory.mktemp(f"gateway-{request.param}")
    if request.param == "sqlite":
        gw = start_gateway(tmp, fake_upstream, f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}")
        yield gw
        stop(gw.proc)
        return
    from tests.support.databases import postgres_database

    async with postgres_database() as url:
        gw = start_gateway(tmp, fake_upstream, url)
        yield gw
        stop(gw.proc)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def claude(gateway: Gateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """One client per module: building an SDK client costs far more than a call."""
    import anthropic

    client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def oai(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    import openai

    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def upstream(fake_upstream: FakeUpstream) -> AsyncIterator[UpstreamLog]:
    """What the shared fake upstream received (tests/support/upstream_log.py)."""
    async with httpx.AsyncClient(base_url=fake_upstream.url) as http:
        yield UpstreamLog(http)
