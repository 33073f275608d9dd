"""Resilience of streams end to end, on a real gateway process in front of the fake upstream
(``rgw``, tests/support/routing.py): keep-alives while the upstream is silent, idle and total
timeouts that end a stream with an error event, a client disconnect closing the upstream
connection (an in-process upstream records when it closes), and the SIGTERM drain.

Checked: the frames on the wire, what each SDK makes of them, and the ledger rows.
"""

from __future__ import annotations

import asyncio
import signal
import time

import anthropic
import httpx
import openai
import orjson
import pytest
from sqlalchemy import select

from claudestore.storage.billing_models import UsageRecord
from claudestore.storage.db import Database
from tests.support.routing import (
    SlowUpstream,
    claude,
    db,
    hello,
    http,
    launch,
    ledger_row,
    oai,
    rgw,
    slow_upstream,
    text_of,
    upstream,
)
from tests.support.servers import FakeUpstream, Gateway, stop

__all__ = ["claude", "db", "http", "oai", "rgw", "slow_upstream"]  # fixtures, imported explicitly


# -- keep-alives and timeouts mid-stream -----------------------------------------------------


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
