"""Shared fixtures: databases (both backends), the fake upstream, a running gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from tests.support.servers import FakeUpstream, Gateway, start_fake_upstream, start_gateway, stop

pytest_plugins = ["tests.support.databases", "tests.support.sse"]

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


@pytest.fixture
def claude(gateway: Gateway) -> anthropic.AsyncAnthropic:
    import anthropic

    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)


@pytest.fixture
def oai(gateway: Gateway) -> openai.AsyncOpenAI:
    import openai

    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0)
