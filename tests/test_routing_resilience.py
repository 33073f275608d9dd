"""Routing and resilience end to end: real gateway processes in front of the fake upstream.

Deployments are upstream entries pointing at the one fake; a per-upstream ``x-fake`` header
makes one of them fail in a chosen way on every attempt, and an ``x-dep`` header tells the
fake's request log which deployment an attempt went to. Checked: what each SDK sees, what the
fake received (how many attempts, where), the ledger row (one per request, ``attempts``),
``/admin/upstreams``, ``/metrics`` and ``/readyz``; keep-alives, timeouts, client disconnect
(an in-process upstream records when its connection closes) and the SIGTERM drain.
"""

from __future__ import annotations

import asyncio
import os
import signal
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


class FakeLog:
    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake

    async def clear(self) -> None:
        async with httpx.AsyncClient() as client:
            (await client.delete(f"{self.fake.url}/_fake/requests")).raise_for_status()

    async def entries(self) -> list[dict]:
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{self.fake.url}/_fake/requests", params={"limit": 200})
        return [r for r in resp.json() if r["path"].endswith(("/messages", "/completions"))]

    async def deployments(self) -> list[str]:
        return [r["headers"].get("x-dep", "?") for r in await self.entries()]


@pytest_asyncio.fixture(loop_scope="session")
async def fake_log(fake_upstream: FakeUpstream) -> FakeLog:
    log = FakeLog(fake_upstream)
    await log.clear()
    return log


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


async def upstreams(http: httpx.AsyncClient) -> dict[str, dict]:
    resp = await http.get("/admin/upstreams", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert resp.status_code == 200, resp.text
    return {f"{d['model']}:{d['name']}": d for d in resp.json()["data"]}


# -- deployments, retries, fallbacks ---------------------------------------------------------


async def test_overloaded_deployment_fails_over_then_cools_down(
    claude: anthropic.AsyncAnthropic,
    oai: openai.AsyncOpenAI,
    http: httpx.AsyncClient,
    db: Database,
    fake_log: FakeLog,
) -> None:
    raw = await claude.messages.with_raw_response.create(model="two-deps", max_tokens=50, messages=hello())
    msg = await raw.parse()
    assert msg.content[0].text == text_of(8) and msg.model == "two-deps"
    # The primary answered 529 with retry-after: the same request went to the secondary at once.
    assert await fake_log.deployments() == ["overloaded", "ok-a"]
    row = await ledger_row(db, raw.headers["request-id"])
    assert (row.status, row.attempts, row.upstream, row.output_tokens) == (200, 2, "ok-a", 8)

    state = await upstreams(http)
    primary, secondary = state["two-deps:primary"], state["two-deps:secondary"]
    assert primary["state"] == "cooldown" and 1.5 < primary["cooldown_remaining_s"] <= 3
    assert primary["cooldowns"] == 1 and "Upstream 'overloaded' error" in primary["last_error"]
    assert secondary["state"] == "healthy" and secondary["in_flight"] == 0

    # While the primary cools down, requests skip it: one attempt, straight to the secondary.
    await fake_log.clear()
    chunks = [
        c async for c in await oai.chat.completions.create(model="two-deps", messages=hello(), stream=True)
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text_of(8)
    assert await fake_log.deployments() == ["ok-a"]


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
async def test_exhausted_budget_returns_the_last_error_in_the_callers_shape(
    claude: anthropic.AsyncAnthropic,
    oai: openai.AsyncOpenAI,
    db: Database,
    fake_log: FakeLog,
    endpoint: str,
) -> None:
    if endpoint == "anthropic":
        with pytest.raises(anthropic.InternalServerError) as info:
            await claude.messages.create(model="all-fail", max_tokens=20, messages=hello())
        err: Any = info.value
        assert err.status_code == 500 and err.body["error"]["type"] == "api_error"
    else:
        with pytest.raises(openai.InternalServerError) as oinfo:
            await oai.chat.completions.create(model="all-fail", messages=hello())
        err = oinfo.value
        assert err.status_code == 500 and err.body["type"] == "server_error"
    assert "Upstream 'broken" in str(err.body)
    attempts = await fake_log.deployments()
    assert len(attempts) == 3 and set(attempts) == {"broken", "broken2"}
    row = await ledger_row(db, err.response.headers["request-id"])
    assert (row.status, row.attempts, row.error_kind) == (500, 3, "api_error")


async def test_fallback_model_served_in_another_format(
    claude: anthropic.AsyncAnthropic, db: Database, fake_log: FakeLog
) -> None:
    async with claude.messages.stream(model="with-fallback", max_tokens=50, messages=hello()) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == text_of(8) and final.usage.output_tokens == 8
    entries = await fake_log.entries()
    # The model's own deployment twice (a retry after backoff), then the fallback model's
    # OpenAI-format deployment with a request rebuilt for that format.
    assert [e["headers"]["x-dep"] for e in entries] == ["broken", "broken", "ok-o"]
    assert entries[-1]["path"] == "/v1/chat/completions"
    assert (
        entries[-1]["body"]["model"] == "fake-gpt" and entries[-1]["body"]["stream_options"]["include_usage"]
    )
    rows: list[UsageRecord] = []
    deadline = time.monotonic() + 10
    while not rows:  # the ledger is written in batches (50 ms): wait for the row
        assert time.monotonic() < deadline, "no ledger row for the with-fallback request"
        await asyncio.sleep(0.05)
        async with db.session() as s:
            rows = list(await s.scalars(select(UsageRecord).where(UsageRecord.model == "with-fallback")))
    assert len(rows) == 1  # one request, one ledger row
    assert (rows[0].attempts, rows[0].upstream, rows[0].upstream_model, rows[0].status) == (
        3,
        "ok-o",
        "fake-gpt",
        200,
    )


async def test_connection_errors_go_to_the_next_deployment(
    oai: openai.AsyncOpenAI, fake_log: FakeLog, http: httpx.AsyncClient
) -> None:
    raw = await oai.chat.completions.with_raw_response.create(model="conn-fail", messages=hello())
    assert raw.parse().choices[0].message.content == text_of(8)
    assert await fake_log.deployments() == ["ok-b"]  # the dead one never reached the fake
    state = await upstreams(http)
    assert "could not be reached" in state["conn-fail:dead/fake-claude"]["last_error"]


async def test_client_errors_are_not_retried(
    claude: anthropic.AsyncAnthropic, db: Database, fake_log: FakeLog
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude.messages.create(model="no-retry", max_tokens=20, messages=hello())
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert await fake_log.deployments() == ["bad-request"]
    row = await ledger_row(db, info.value.response.headers["request-id"])
    assert (row.status, row.attempts) == (400, 1)


@pytest.mark.parametrize("knob", ["cut_after=4", "error_after=4"])
async def test_nothing_is_retried_after_the_first_byte(
    http: httpx.AsyncClient, rgw: Gateway, db: Database, fake_log: FakeLog, knob: str
) -> None:
    body = {"model": "plain", "max_tokens": 50, "stream": True, "messages": hello(f"[[fake {knob}]]")}
    resp = await http.post("/v1/messages", json=body, headers={"x-api-key": rgw.key})
    assert resp.status_code == 200
    frames = resp.text.strip().split("\n\n")
    assert frames[-1].startswith("event: error")
    kind = orjson.loads(frames[-1].split("data: ", 1)[1])["error"]["type"]
    assert kind == ("api_error" if knob.startswith("cut") else "overloaded_error")
    assert await fake_log.deployments() == ["ok-a"]
    row = await ledger_row(db, resp.headers["request-id"])
    assert (row.status, row.attempts) == (502, 1)


# What each endpoint answers for an upstream status (wire.md A.7, B.5, D.7).
ANTHROPIC_STATUS = {502: 529, 503: 529, 422: 400}
OPENAI_STATUS = {502: 503, 503: 503, 529: 503}


@pytest.mark.parametrize("code", [*RETRIED, *NOT_RETRIED, *CREDENTIALS])
async def test_status_matrix_before_the_first_byte(
    http: httpx.AsyncClient, rgw: Gateway, db: Database, fake_log: FakeLog, code: int
) -> None:
    """Every upstream error status, on three deployments (two Anthropic-format, one
    OpenAI-format): retried ones use all three, client errors one; the client gets the last
    error in its own envelope and status; one ledger row with the attempts."""
    attempts = 1 if code in NOT_RETRIED else 3
    seen = 502 if code in CREDENTIALS else code  # what the gateway makes of the upstream's status
    for endpoint in ("anthropic", "openai"):
        await fake_log.clear()
        messages = hello(f"[[fake status={code}]]")
        if endpoint == "anthropic":
            body = {"model": f"status-{code}", "max_tokens": 20, "messages": messages}
            resp = await http.post("/v1/messages", json=body, headers={"x-api-key": rgw.key})
            assert resp.status_code == ANTHROPIC_STATUS.get(seen, seen)
            error = resp.json()["error"]
            assert resp.json()["type"] == "error" and error["type"] in (
                "invalid_request_error",
                "authentication_error",
                "permission_error",
                "not_found_error",
                "request_too_large",
                "rate_limit_error",
                "api_error",
                "overloaded_error",
                "timeout_error",
            )
        else:
            body = {"model": f"status-{code}", "messages": messages}
            resp = await http.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {rgw.key}"}
            )
            assert resp.status_code == OPENAI_STATUS.get(seen, seen)
            error = resp.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
        assert error["message"].startswith("Upstream 'ok-")
        tried = await fake_log.deployments()
        assert len(tried) == attempts and len(set(tried)) == attempts  # never the same one twice here
        row = await ledger_row(db, resp.headers["request-id"])
        assert (row.status, row.attempts) == (seen, attempts)


async def test_deployment_rpm_spills_to_the_next_priority(oai: openai.AsyncOpenAI, fake_log: FakeLog) -> None:
    for _ in range(3):
        await oai.chat.completions.create(model="rpm-model", messages=hello())
    assert await fake_log.deployments() == ["ok-a", "ok-a", "ok-b"]


# -- timeouts and keep-alives ----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
async def test_first_byte_timeout_is_a_504_in_the_callers_shape(
    claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI, db: Database, fake_log: FakeLog, endpoint: str
) -> None:
    started = time.monotonic()
    if endpoint == "anthropic":
        with pytest.raises(anthropic.APIStatusError) as info:
            await claude.messages.create(model="slow-model", max_tokens=20, messages=hello(), stream=True)
        err: Any = info.value
        assert err.status_code == 504 and err.body["error"]["type"] == "timeout_error"
    else:
        with pytest.raises(openai.InternalServerError) as oinfo:
            await oai.chat.completions.create(model="slow-model", messages=hello())
        err = oinfo.value
        assert err.status_code == 504 and (err.body["type"], err.body["code"]) == ("server_error", "timeout")
    assert "did not answer within 0.3 s" in str(err.body)
    assert time.monotonic() - started < 5
    assert len(await fake_log.deployments()) == 3  # timeouts are retried within the budget
    row = await ledger_row(db, err.response.headers["request-id"])
    assert (row.status, row.error_kind, row.attempts) == (504, "timeout_error", 3)


def frames_of(text: str) -> list[str]:
    return [f for f in text.split("\n\n") if f]


async def test_keepalives_while_the_upstream_is_silent(
    http: httpx.AsyncClient, rgw: Gateway, claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI
) -> None:
    prompt = hello("[[fake tokens=1 delay_ms=150]]")  # 7 events 150 ms apart; keep-alive every 100 ms
    body = {"model": "plain", "max_tokens": 50, "stream": True, "messages": prompt}
    resp = await http.post("/v1/messages", json=body, headers={"x-api-key": rgw.key})
    frames = frames_of(resp.text)
    pings = [f for f in frames if f == 'event: ping\ndata: {"type": "ping"}']
    assert len(pings) >= 5  # the fake's own one, plus ours while it was silent
    assert frames[-1].startswith("event: message_stop")

    body = {"model": "plain", "stream": True, "messages": prompt}
    resp = await http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {rgw.key}"})
    frames = frames_of(resp.text)
    assert sum(f == ": ping" for f in frames) >= 4 and frames[-1] == "data: [DONE]"
    assert not any(f.startswith("event:") for f in frames)

    # Both SDKs read such streams as if the keep-alives were not there.
    async with claude.messages.stream(model="plain", max_tokens=50, messages=prompt) as stream:
        assert (await stream.get_final_message()).content[0].text == text_of(1)
    chunks = [c async for c in await oai.chat.completions.create(model="plain", messages=prompt, stream=True)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text_of(1)


@pytest.mark.parametrize(
    ("model", "knob", "message"),
    [
        ("idle-model", "stall_after=4 stall_ms=5000", "idle for more than 0.6 s"),
        ("capped-model", "tokens=50 delay_ms=100", "exceeded 1 s"),
    ],
)
async def test_idle_and_total_timeouts_end_the_stream_with_a_timeout_error(
    http: httpx.AsyncClient,
    rgw: Gateway,
    oai: openai.AsyncOpenAI,
    db: Database,
    model: str,
    knob: str,
    message: str,
) -> None:
    body = {"model": model, "max_tokens": 100, "stream": True, "messages": hello(f"[[fake {knob}]]")}
    started = time.monotonic()
    resp = await http.post("/v1/messages", json=body, headers={"x-api-key": rgw.key})
    assert time.monotonic() - started < 3
    frames = frames_of(resp.text)
    assert frames[-1].startswith("event: error")
    error = orjson.loads(frames[-1].split("data: ", 1)[1])["error"]
    assert error["type"] == "timeout_error" and message in error["message"]
    if model == "idle-model":  # keep-alives flowed meanwhile, and did not count as activity
        assert sum(f.startswith("event: ping") for f in frames[4:]) >= 3
    row = await ledger_row(db, resp.headers["request-id"])
    assert (row.status, row.error_kind) == (502, "timeout_error")
    assert row.input_tokens > 0  # the partial usage is billed

    # The openai SDK raises the in-stream error object.
    stream = await oai.chat.completions.create(model=model, messages=hello(f"[[fake {knob}]]"), stream=True)
    with pytest.raises(openai.APIError) as info:
        async for _ in stream:
            pass
    assert info.value.code == "timeout" and message in info.value.message


# -- client disconnect -----------------------------------------------------------------------


async def test_client_disconnect_closes_the_upstream_within_100ms(
    http: httpx.AsyncClient, rgw: Gateway, slow_upstream: SlowUpstream, db: Database
) -> None:
    body = {"model": "inproc-model", "max_tokens": 5000, "stream": True, "messages": hello()}
    seen = 0
    async with http.stream("POST", "/v1/messages", json=body, headers={"x-api-key": rgw.key}) as resp:
        request_id = resp.headers["request-id"]
        async for line in resp.aiter_lines():
            if line.startswith("event: content_block_delta"):
                seen += 1
                if seen == 5:
                    break
        left_at = time.monotonic()
    await asyncio.wait_for(slow_upstream.closed.wait(), 3)  # TimeoutError: it was never closed
    gap = slow_upstream.closed_at[-1] - left_at
    print(f"upstream connection closed {gap * 1000:.1f} ms after the client left")
    assert gap < 0.1
    row = await ledger_row(db, request_id)
    assert row.client_disconnected and row.status == 499
    assert row.input_tokens == 12 and row.output_tokens >= 5


# -- operations: admin view, metrics, readiness ----------------------------------------------


async def test_admin_upstreams_needs_the_admin_key(http: httpx.AsyncClient, rgw: Gateway) -> None:
    assert (await http.get("/admin/upstreams")).status_code == 401
    resp = await http.get("/admin/upstreams", headers={"x-api-key": rgw.key})
    assert resp.status_code == 403 and resp.json()["error"]["type"] == "permission_error"
    state = await upstreams(http)
    assert {"plain:ok-a/fake-claude", "rpm-model:limited", "rpm-model:spill"} <= set(state)
    assert state["rpm-model:limited"]["rpm"]["limit"] == 2


async def test_metrics(http: httpx.AsyncClient, rgw: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model="plain", max_tokens=50, messages=hello()) as stream:
        await stream.get_final_message()
    resp = await http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    ok = 'claudestore_requests_total{endpoint="anthropic",model="plain",upstream="ok-a",status="200"}'
    assert values[ok] >= 1
    assert values['claudestore_tokens_total{model="plain",upstream="ok-a",type="output"}'] >= 8
    assert values['claudestore_fallbacks_total{model="with-fallback",fallback="fb-target"}'] == 1
    assert values['claudestore_cooldowns_total{model="two-deps",deployment="primary"}'] >= 1
    assert (
        values['claudestore_retries_total{model="all-fail",deployment="broken/fake-claude",reason="500"}']
        >= 1
    )
    assert (
        values['claudestore_retries_total{model="slow-model",deployment="slow/fake-claude",reason="timeout"}']
        >= 1
    )
    assert (
        values[
            'claudestore_upstream_attempts_total{model="two-deps",upstream="overloaded",deployment="primary",result="529"}'
        ]
        >= 1
    )
    ttft = 'claudestore_time_to_first_token_seconds_count{endpoint="anthropic",model="plain",upstream="ok-a"}'
    assert values[ttft] >= 1
    assert (
        values[
            'claudestore_request_duration_seconds_bucket{endpoint="anthropic",model="plain",upstream="ok-a",le="+Inf"}'
        ]
        >= 1
    )
    assert values["claudestore_streams_in_flight"] == 0 and values["claudestore_requests_in_flight"] == 0
    assert values["claudestore_draining"] == 0
    state = 'claudestore_deployment_state{model="all-fail",deployment="broken/fake-claude",upstream="broken",state="%s"}'
    assert sum(values[state % s] for s in ("healthy", "cooldown", "half_open")) == 1


async def test_readyz(http: httpx.AsyncClient) -> None:
    resp = await http.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "checks": {"database": "ok"}}


# -- graceful shutdown -----------------------------------------------------------------------


async def test_sigterm_drains_streams_and_refuses_new_requests(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream
) -> None:
    config = {
        "server": {"drain_seconds": 2},
        "upstreams": [upstream("ok-a", fake_upstream)],
        "models": [{"id": "plain", "upstream": "ok-a", "upstream_model": "fake-claude"}],
    }
    gw = launch(tmp_path_factory.mktemp("drain"), config, "drain")
    headers = {"x-api-key": gw.key}
    started: dict[str, asyncio.Event] = {"short": asyncio.Event(), "long": asyncio.Event()}

    async def stream(client: httpx.AsyncClient, name: str, knobs: str) -> tuple[str, list[str], float]:
        body = {"model": "plain", "max_tokens": 500, "stream": True, "messages": hello(f"[[fake {knobs}]]")}
        async with client.stream("POST", "/v1/messages", json=body, headers=headers) as resp:
            assert resp.status_code == 200
            events = []
            async for line in resp.aiter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
                    if line == "event: content_block_delta":
                        started[name].set()
            return resp.headers["request-id"], events, time.monotonic()

    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            short = asyncio.create_task(stream(client, "short", "tokens=8 delay_ms=100"))  # ~1.3 s
            long = asyncio.create_task(stream(client, "long", "tokens=300 delay_ms=50"))  # ~15 s
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 10)
            signalled = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.4)
            async with httpx.AsyncClient(base_url=gw.url, timeout=5) as fresh:
                try:
                    refused = await fresh.post("/v1/messages", json={}, headers=headers)
                except httpx.ConnectError:
                    pass  # the listening socket is closed: refused cleanly
                else:
                    assert refused.status_code == 529, refused.text  # or, in the instant before, 529
            short_id, short_events, _ = await short
            long_id, long_events, long_end = await long
        assert short_events[-1] == "message_stop" and "error" not in short_events
        assert long_events[-1] == "error" and "message_stop" not in long_events
        assert 1.8 < long_end - signalled < 4
        assert gw.proc.wait(10) in (0, -signal.SIGTERM)
    finally:
        stop(gw.proc)
    # Nothing is lost from the ledger: both streams have their row, the ended one its partial usage.
    database = Database(gw.database_url)
    try:
        async with database.session() as s:
            rows = {r.request_id: r for r in await s.scalars(select(UsageRecord))}
    finally:
        await database.close()
    assert (rows[short_id].status, rows[short_id].output_tokens, rows[short_id].stop_reason) == (
        200,
        8,
        "end_turn",
    )
    ended = rows[long_id]
    assert (ended.status, ended.error_kind) == (503, "overloaded_error")
    assert 10 < ended.output_tokens < 300 and ended.input_tokens > 0
