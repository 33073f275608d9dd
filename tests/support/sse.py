"""Recorded SSE streams, the stream pipelines, and the official SDKs reading what they produce.

``serve`` is an in-process HTTP server (aiohttp on 127.0.0.1, port 0) that answers any
POST with the bytes it was given; ``anthropic_final`` / ``openai_final`` read them with
``AsyncAnthropic().messages.stream()`` / ``AsyncOpenAI().chat.completions.stream()`` and
return the message the SDK assembled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest_asyncio
from aiohttp import web

from claudestore.core.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StreamError,
    StreamEvent,
)
from claudestore.protocol.sse import Frame, SSEDecoder
from claudestore.translate.anthropic.stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from claudestore.translate.openai.stream import OpenAIStreamDecoder, OpenAIStreamEncoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sse"
ANTHROPIC = sorted(p.name for p in FIXTURES.glob("anthropic_*.sse"))
OPENAI = sorted(p.name for p in FIXTURES.glob("openai_*.sse"))
MESSAGES = [{"role": "user", "content": "hi"}]

Decoder = AnthropicStreamDecoder | OpenAIStreamDecoder
Encoder = AnthropicStreamEncoder | OpenAIStreamEncoder


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decoder_for(name: str) -> Decoder:
    return AnthropicStreamDecoder() if name.startswith("anthropic") else OpenAIStreamDecoder()


def frames_of(data: bytes, step: int | None = None) -> list[Frame]:
    dec = SSEDecoder()
    if step is None:
        return dec.feed(data) + dec.flush()
    out = [f for i in range(0, len(data), step) for f in dec.feed(data[i : i + step])]
    return out + dec.flush()


def events_of(name: str, data: bytes | None = None) -> list[StreamEvent]:
    dec = decoder_for(name)
    evs = [ev for f in frames_of(load(name) if data is None else data) for ev in dec.feed(f)]
    return evs + dec.finish()


def translate(
    name: str, enc: Encoder, *, data: bytes | None = None, step: int | None = None, ka: bool = False
) -> bytes:
    dec = decoder_for(name)
    out = []
    for f in frames_of(load(name) if data is None else data, step):
        for ev in dec.feed(f):
            out.append(enc.encode(ev))
            if ka:
                out.append(enc.keepalive())
    out += [enc.encode(ev) for ev in dec.finish()]
    return b"".join(out)


def to_openai(name: str, include_usage: bool = True, **kw: Any) -> bytes:
    return translate(
        name, OpenAIStreamEncoder("gpt-pub", include_usage=include_usage, created=1700000000), **kw
    )


def to_anthropic(name: str, **kw: Any) -> bytes:
    return translate(name, AnthropicStreamEncoder("claude-pub"), **kw)


def check_grammar(evs: list[StreamEvent]) -> None:
    """The canonical grammar: start, sequential gapless blocks, delta + stop (or an error)."""
    if isinstance(evs[-1], StreamError):
        assert not any(isinstance(e, StreamError) for e in evs[:-1])
        evs = evs[:-1]
        if not evs:
            return
    assert isinstance(evs[0], MessageStart)
    open_block: BlockStart | None = None
    next_index = 0
    last_delta: BlockDelta | None = None
    for ev in evs[1:]:
        if isinstance(ev, BlockStart):
            assert open_block is None and ev.index == next_index
            open_block, next_index, last_delta = ev, next_index + 1, None
        elif isinstance(ev, BlockDelta):
            assert open_block is not None and ev.index == open_block.index
            last_delta = ev
        elif isinstance(ev, BlockStop):
            assert open_block is not None and ev.index == open_block.index
            if open_block.kind == "thinking":
                assert last_delta is not None and last_delta.kind == "signature"
            open_block = None
        else:
            assert open_block is None or isinstance(ev, Ping)
    if isinstance(evs[-1], MessageStop):
        assert isinstance(evs[-2], MessageDelta)


def wire_frames(data: bytes) -> list[tuple[str | None, Any]]:
    return [(f.event, orjson.loads(f.data) if f.data[:1] == b"{" else f.data) for f in frames_of(data)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def serve() -> AsyncIterator[Callable[[bytes], str]]:
    """Serves bytes as an SSE response; returns a base URL whose every POST gets them."""
    bodies: dict[str, bytes] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(bodies[request.match_info["key"]])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/{key}/v1/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    def url(body: bytes) -> str:
        bodies[key := str(len(bodies))] = body
        return f"http://127.0.0.1:{port}/{key}"

    yield url
    await runner.cleanup()


async def anthropic_final(url: str) -> Any:
    client = anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0)
    async with client.messages.stream(model="claude-pub", max_tokens=64, messages=MESSAGES) as stream:  # type: ignore[arg-type]
        return await stream.get_final_message()


async def openai_final(url: str) -> Any:
    client = openai.AsyncOpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
    async with client.chat.completions.stream(model="gpt-pub", messages=MESSAGES) as stream:  # type: ignore[arg-type]
        return await stream.get_final_completion()
