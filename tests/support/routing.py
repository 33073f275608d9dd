"""The routing gateway (``rgw``) and its harness, for tests/test_routing_failover.py and
tests/test_routing_streams.py.

``rgw`` is a gateway process (SQLite, the admin key) whose upstreams are entries pointing at
the one fake upstream, made to fail in a chosen way by a per-upstream ``x-fake`` header and
named in the fake's request log by an ``x-dep`` header, plus ``slow_upstream``, an in-process
upstream that records when its connection closes, and one port nobody listens on. ``launch``
starts a gateway with any configuration. Import the fixtures into the test module explicitly;
``rgw`` and ``slow_upstream`` are module-scoped, so each test module gets its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from sqlalchemy import select

from claudestore.fake_upstream.script import WORDS
from claudestore.storage.billing_models import UsageRecord
from claudestore.storage.db import Database
from tests.support.servers import (
    ADMIN_KEY,
    CLI,
    UPSTREAM_KEY,
    FakeUpstream,
    Gateway,
    create_key,
    free_port,
    stop,
    wait_http,
)

ROUTING = {
    "max_attempts": 3,
    "budget_seconds": 10,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
    "max_retry_wait": 1.0,
    "cooldown_failures": 2,
    "cooldown_seconds": 1.0,
}


RETRIED = (408, 429, 500, 502, 503, 504, 529)
NOT_RETRIED = (400, 404, 413, 422)
# The upstream refused the gateway's own credentials: the operator's problem, not the client's.
# It is a 502 (never the client's 401/403), tried on the other deployments like any 5xx.
CREDENTIALS = (401, 403)


def upstream(name: str, fake: FakeUpstream, *, fmt: str = "anthropic", fault: str = "", **extra: Any) -> dict:
    headers = {"x-dep": name}
    if fault:
        headers["x-fake"] = fault
    return {
        "name": name,
        "type": fmt,
        "base_url": fake.url + ("/v1" if fmt == "openai" else ""),
        "api_key": UPSTREAM_KEY,
        "headers": headers,
        **extra,
    }


def dep(up: str, **extra: Any) -> dict:
    model = "fake-gpt" if up.endswith("-o") else "fake-claude"
    return {"upstream": up, "upstream_model": model, **extra}


def launch(tmp: Path, config: dict, name: str) -> Gateway:
    """A gateway process with exactly this configuration (plus the admin key and a SQLite file)."""
    db_url = f"sqlite+aiosqlite:///{tmp / (name + '.db')}"
    config = {"admin": {"api_key": ADMIN_KEY}, "database": {"url": db_url}, **config}
    config_path = tmp / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    key = create_key(config_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDESTORE_DATABASE_URL")}
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(config_path), "--port", str(port), "--log-level", "warning"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
    return Gateway(proc, port, key, config_path, db_url, log)


# -- an in-process upstream that records when its connection closes -----------------------


class SlowUpstream:
    """Streams an Anthropic answer, one text delta every 10 ms, for a long time."""

    def __init__(self) -> None:
        self.closed_at: list[float] = []
        self.closed = asyncio.Event()
        self.port = 0

    async def handler(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_slow",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "slow-model",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        }
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " tok"}}
        try:
            await resp.write(sse("message_start", start) + sse("content_block_start", block))
            for _ in range(3000):
                await resp.write(sse("content_block_delta", delta))
                await asyncio.sleep(0.01)
        except (asyncio.CancelledError, ConnectionError):
            self.closed_at.append(time.monotonic())
            self.closed.set()
            raise
        return resp


def sse(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def slow_upstream() -> AsyncIterator[SlowUpstream]:
    slow = SlowUpstream()
    app = web.Application()
    app.router.add_post("/v1/messages", slow.handler)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    slow.port = int(runner.addresses[0][1])
    yield slow
    await runner.cleanup()


# -- the gateway under test ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgw(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream, slow_upstream: SlowUpstream
) -> Iterator[Gateway]:
    f = fake_upstream
    config = {
        "server": {"keepalive_interval": 0.1},
        "routing": ROUTING,
        "upstreams": [
            upstream("ok-a", f),
            upstream("ok-b", f),
            upstream("ok-o", f, fmt="openai"),
            upstream("overloaded", f, fault="status=529; retry_after=3"),
            upstream("broken", f, fault="status=500"),
            upstream("broken2", f, fault="status=500"),
            upstream("bad-request", f, fault="status=400"),
            upstream("slow", f, fault="ttfb_ms=1500", timeouts={"first_byte": 0.3}),
            upstream("idle", f, timeouts={"idle": 0.6}),
            upstream("capped", f, timeouts={"total": 1.0}),
            {"name": "inproc", "type": "anthropic", "base_url": f"http://127.0.0.1:{slow_upstream.port}"},
            {"name": "dead", "type": "anthropic", "base_url": f"http://127.0.0.1:{free_port()}"},  # refuses
        ],
        "models": [
            {"id": "plain", "upstream": "ok-a", "upstream_model": "fake-claude"},
            {
                "id": "two-deps",
                "deployments": [dep("overloaded", name="primary"), dep("ok-a", name="secondary", priority=1)],
            },
            {"id": "all-fail", "deployments": [dep("broken"), dep("broken2")]},
            {"id": "with-fallback", "deployments": [dep("broken")], "fallbacks": ["fb-target"]},
            {"id": "fb-target", "deployments": [dep("ok-o")]},
            {"id": "no-retry", "upstream": "bad-request", "upstream_model": "fake-claude"},
            {"id": "conn-fail", "deployments": [dep("dead"), dep("ok-b", priority=1)]},
            {"id": "slow-model", "upstream": "slow", "upstream_model": "fake-claude"},
            {"id": "idle-model", "upstream": "idle", "upstream_model": "fake-claude"},
            {"id": "capped-model", "upstream": "capped", "upstream_model": "fake-claude"},
            {"id": "inproc-model", "upstream": "inproc", "upstream_model": "slow-model"},
            *(
                {"id": f"status-{code}", "deployments": [dep("ok-a"), dep("ok-b"), dep("ok-o")]}
                for code in (*RETRIED, *NOT_RETRIED, *CREDENTIALS)
            ),
            {
                "id": "rpm-model",
                "deployments": [dep("ok-a", name="limited", rpm=2), dep("ok-b", name="spill", priority=1)],
            },
        ],
    }
    gw = launch(tmp_path_factory.mktemp("routing"), config, "routing")
    yield gw
    stop(gw.proc)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(rgw: Gateway) -> AsyncIterator[Database]:
    database = Database(rgw.database_url)
    yield database
    await database.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(rgw: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rgw.url, timeout=30) as client:
        yield client


@pytest.fixture
def claude(rgw: Gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=rgw.url, api_key=rgw.key, max_retries=0)


@pytest.fixture
def oai(rgw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=rgw.url + "/v1", api_key=rgw.key, max_retries=0)


async def ledger_row(db: Database, request_id: str) -> UsageRecord:
    deadline = time.monotonic() + 10
    while True:
        async with db.session() as s:
            row = await s.scalar(select(UsageRecord).where(UsageRecord.request_id == request_id))
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no ledger row for {request_id}"
        await asyncio.sleep(0.05)


def hello(extra: str = "") -> list[Any]:
    return [{"role": "user", "content": f"Hello {extra}".strip()}]


def text_of(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))
