"""The fake upstream, driven by the official anthropic and openai SDKs over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from claudestore.fake_upstream.knobs import KnobError, parse_knobs
from claudestore.fake_upstream.script import WORDS, count_input_tokens
from claudestore.fake_upstream.server import create_app, start_fake_upstream

KEY = "sk-fake-test"
DEFAULT_TEXT = " ".join(WORDS[:8])
TOOL_INPUT = {"city": "Paris", "days": 3}


@pytest_asyncio.fixture(scope="module")
async def port() -> AsyncIterator[int]:
    runner, bound = await start_fake_upstream(api_key=KEY)
    yield bound
    await runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def ac(port: int) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key=KEY, max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module")
async def oc(port: int) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module")
async def http(port: int) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        yield session


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def sse_frames(raw: bytes) -> list[tuple[str | None, bytes]]:
    """(event name, data) of every frame; asserts the blank-line framing."""
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw[:-2].split(b"\n\n"):
        event, data = None, b""
        for line in block.split(b"\n"):
            name, _, value = line.partition(b": ")
            if name == b"event":
                event = value.decode()
            else:
                assert name == b"data", line
                data = value
        out.append((event, data))
    return out


# ---------------------------------------------------------------- Anthropic


async def test_anthropic_create(ac: anthropic.AsyncAnthropic) -> None:
    msg = await ac.messages.create(model="any-model", max_tokens=100, messages=user("hello there friend"))
    assert msg.id.startswith("msg_fake") and msg._request_id.startswith("req_")
    assert msg.model == "any-model" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == DEFAULT_TEXT
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    u = msg.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (
        3, 8, 0, 0
    )  # fmt: skip


async def test_anthropic_raw_stream_grammar(http: aiohttp.ClientSession) -> None:
    body = {"model": "m", "max_tokens": 50, "stream": True, "messages": user("hi [[fake tokens=3 tool=t]]")}
    async with http.post("/v1/messages", json=body, headers={"x-api-key": KEY}) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["request-id"].startswith("req_fake")
        raw = await resp.read()
    frames = sse_frames(raw)
    names = [name for name, _ in frames]
    for name, data in frames:
        assert orjson.loads(data)["type"] == name
    assert names == [
        "message_start", "ping",
        "content_block_start", *["content_block_delta"] * 3, "content_block_stop",
        "content_block_start", *["content_block_delta"] * 4, "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    events = [orjson.loads(d) for _, d in frames]
    start_usage = events[0]["message"]["usage"]
    assert start_usage == {
        "input_tokens": 4, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0
    }  # fmt: skip
    assert [e["delta"]["text"] for e in events[3:6]] == ["lorem", " ipsum", " dolor"]
    assert events[7]["index"] == 1 and events[7]["content_block"]["input"] == {}
    fragments = [e["delta"]["partial_json"] for e in events[8:12]]
    assert fragments[0] == "" and len(fragments) >= 4
    assert orjson.loads("".join(fragments)) == TOOL_INPUT
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2]["usage"]["output_tokens"] == 13 and events[-2]["usage"]["input_tokens"] == 4


async def test_anthropic_stream_helper_thinking_and_tools(ac: anthropic.AsyncAnthropic) -> None:
    prompt = "weather? [[fake thinking=5 tokens=4 tools=2 tool=lookup cache_read=7 cache_write=3]]"
    async with ac.messages.stream(model="m", max_tokens=1000, messages=user(prompt)) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "lorem ipsum dolor sit"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking = final.content[0]
    assert thinking.type == "thinking" and len(thinking.thinking.split()) == 5 and thinking.signature
    tools = [b for b in final.content if b.type == "tool_use"]
    assert [t.name for t in tools] == ["lookup", "lookup_2"]
    assert all(t.input == TOOL_INPUT and t.id.startswith("toolu_fake") for t in tools)
    assert len({t.id for t in tools}) == 2
    assert final.stop_reason == "tool_use"
    u = final.usage
    assert (u.input_tokens, u.output_tokens) == (8, 5 + 4 + 20)
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (7, 3)


async def test_anthropic_non_stream_thinking_signature(ac: anthropic.AsyncAnthropic) -> None:
    msg = await ac.messages.create(model="m", max_tokens=100, messages=user("[[fake thinking=2 tokens=0]]"))
    assert [b.type for b in msg.content] == ["thinking"]
    assert msg.content[0].thinking == "let me" and msg.content[0].signature


async def test_anthropic_max_tokens_and_stop_sequence(ac: anthropic.AsyncAnthropic) -> None:
    msg = await ac.messages.create(model="m", max_tokens=3, messages=user("hi"))
    assert (msg.content[0].text, msg.stop_reason, msg.usage.output_tokens) == (
        "lorem ipsum dolor",
        "max_tokens",
        3,
    )
    msg = await ac.messages.create(
        model="m", max_tokens=100, stop_sequences=["x", "sit"], messages=user("hi")
    )
    assert (msg.content[0].text, msg.stop_reason, msg.stop_sequence) == (
        "lorem ipsum dolor",
        "stop_sequence",
        "sit",
    )
    stream = await ac.messages.create(
        model="m", max_tokens=100, stop_sequences=["amet"], messages=user("hi [[fake tool=t]]"), stream=True
    )
    events = [e async for e in stream]
    delta = next(e for e in events if e.type == "message_delta")
    assert (delta.delta.stop_reason, delta.delta.stop_sequence, delta.usage.output_tokens) == (
        "stop_sequence", "amet", 4
    )  # fmt: skip
    assert not any(e.type == "content_block_start" and e.content_block.type == "tool_use" for e in events)


@pytest.mark.parametrize(
    ("status", "exc", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (503, anthropic.InternalServerError, "overloaded_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_anthropic_status_errors(
    ac: anthropic.AsyncAnthropic, status: int, exc: type[Exception], kind: str
) -> None:
    for stream in (False, True):
        with pytest.raises(exc) as info:
            await ac.messages.create(
                model="m",
                max_tokens=10,
                messages=user(f"x [[fake status={status} retry_after=2]]"),
                stream=stream,
            )
        err = info.value
        assert isinstance(err, anthropic.APIStatusError)
        assert err.status_code == status and err.body["error"]["type"] == kind
        assert err.body["request_id"].startswith("req_") and err.response.headers["retry-after"] == "2"


async def test_anthropic_auth_and_validation(port: int, http: aiohttp.ClientSession) -> None:
    bad = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        await bad.messages.create(model="m", max_tokens=5, messages=user("hi"))
    await bad.close()
    assert info.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    async with http.post(
        "/v1/messages", json={"model": "m", "messages": user("hi")}, headers={"x-api-key": KEY}
    ) as r:
        assert r.status == 400 and (await r.json())["error"]["type"] == "invalid_request_error"
    async with http.post("/v1/messages", data=b"{nope", headers={"x-api-key": KEY}) as r:
        body = await r.json()
        assert (
            r.status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        )
    async with http.post("/v1/chat/completions", data=b"[", headers={"Authorization": f"Bearer {KEY}"}) as r:
        body = await r.json()
        assert (
            r.status == 400 and body["error"]["type"] == "invalid_request_error" and "param" in body["error"]
        )


async def test_anthropic_mid_stream_failures(ac: anthropic.AsyncAnthropic) -> None:
    async def run(knob: str) -> tuple[list[str], BaseException | None]:
        seen: list[str] = []
        try:
            stream = await ac.messages.create(
                model="m", max_tokens=50, messages=user(f"[[fake {knob}]]"), stream=True
            )
            async for event in stream:
                seen.append(event.type)
        except Exception as exc:
            return seen, exc
        return seen, None

    seen, exc = await run("error_after=3")
    assert seen == ["message_start", "content_block_start"]  # ping (event 2) is skipped by the SDK
    assert (
        isinstance(exc, anthropic.APIStatusError)
        and exc.status_code == 200
        and exc.type == "overloaded_error"
    )
    seen, exc = await run("cut_after=4")
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    assert isinstance(exc, (httpx2.RemoteProtocolError, anthropic.APIConnectionError))
    started = time.perf_counter()
    seen, exc = await run("stall_after=2 stall_ms=150")
    assert seen == ["message_start"] and exc is not None and time.perf_counter() - started >= 0.14


async def test_anthropic_count_tokens_models_and_header_knobs(ac: anthropic.AsyncAnthropic) -> None:
    messages = user("one two three [[fake tokens=2]]")
    counted = await ac.messages.count_tokens(model="m", messages=messages, system="be brief")
    msg = await ac.messages.create(model="m", max_tokens=50, messages=messages, system="be brief")
    assert counted.input_tokens == msg.usage.input_tokens == 5 + 2
    assert msg.content[0].text == "lorem ipsum"
    msg = await ac.messages.create(
        model="m", max_tokens=50, messages=messages, extra_headers={"x-fake": "tokens=1"}
    )
    assert msg.content[0].text == "lorem"
    msg = await ac.messages.create(model="m", max_tokens=50, messages=user("say a b c [[fake echo=1]]"))
    assert msg.content[0].text == "say a b c"
    page = await ac.models.list()
    assert [m.id for m in page.data] == ["fake-claude", "fake-gpt"] and page.has_more is False


# ---------------------------------------------------------------- OpenAI


async def test_openai_create(oc: openai.AsyncOpenAI) -> None:
    done = await oc.chat.completions.create(model="gpt-x", messages=user("hello there friend"))
    assert done.id.startswith("chatcmpl-fake") and done._request_id.startswith("req_")
    assert done.object == "chat.completion" and done.model == "gpt-x"
    choice = done.choices[0]
    assert (choice.message.content, choice.finish_reason, choice.message.tool_calls) == (
        DEFAULT_TEXT,
        "stop",
        None,
    )
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (3, 8, 11)


async def test_openai_raw_stream_chunks(http: aiohttp.ClientSession) -> None:
    body = {"model": "m", "stream": True, "messages": user("[[fake tokens=2 tool=t thinking=1]]")}
    headers = {"Authorization": f"Bearer {KEY}"}
    for include_usage in (False, True):
        payload = {**body, "stream_options": {"include_usage": include_usage}}
        async with http.post("/v1/chat/completions", json=payload, headers=headers) as resp:
            assert resp.headers["x-request-id"].startswith("req_fake")
            frames = sse_frames(await resp.read())
        assert all(name is None for name, _ in frames) and frames[-1][1] == b"[DONE]"
        chunks = [orjson.loads(d) for _, d in frames[:-1]]
        assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        assert deltas[0] == {"role": "assistant", "content": ""}
        assert deltas[1] == {"reasoning_content": "let"}
        assert deltas[2:4] == [{"content": "lorem"}, {"content": " ipsum"}]
        first = deltas[4]["tool_calls"][0]
        assert first["index"] == 0 and first["type"] == "function" and first["id"].startswith("call_fake")
        assert first["function"] == {"name": "t", "arguments": ""}
        later = [d["tool_calls"][0] for d in deltas[5:-1]]
        assert len(later) >= 3 and all(set(t) == {"index", "function"} for t in later)
        assert orjson.loads("".join(t["function"]["arguments"] for t in later)) == TOOL_INPUT
        assert chunks[len(deltas) - 1]["choices"][0]["finish_reason"] == "tool_calls"
        if include_usage:
            assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 13
        else:
            assert all("usage" not in c for c in chunks) and len(chunks) == len(deltas)


async def test_openai_stream_helper(oc: openai.AsyncOpenAI) -> None:
    async with oc.chat.completions.stream(
        model="m",
        messages=user("[[fake thinking=3 tools=2 tool=f cache_read=4 cache_write=2]]"),
        stream_options={"include_usage": True},
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    msg = final.choices[0].message
    assert msg.role == "assistant" and msg.content == DEFAULT_TEXT
    assert msg.reasoning_content == "let me think"  # type: ignore[attr-defined]
    assert [(c.function.name, c.function.parsed_arguments or orjson.loads(c.function.arguments)) for c in msg.tool_calls] == [
        ("f", TOOL_INPUT), ("f_2", TOOL_INPUT)
    ]  # fmt: skip
    assert final.choices[0].finish_reason == "tool_calls"
    u = final.usage
    assert (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens) == (
        6 + 4 + 2,
        3 + 8 + 20,
        4,
    )
    assert (
        u.prompt_tokens_details.cache_write_tokens == 2 and u.completion_tokens_details.reasoning_tokens == 3
    )


async def test_openai_limits_and_stops(oc: openai.AsyncOpenAI) -> None:
    done = await oc.chat.completions.create(model="m", messages=user("hi"), max_completion_tokens=2)
    assert (done.choices[0].message.content, done.choices[0].finish_reason) == ("lorem ipsum", "length")
    done = await oc.chat.completions.create(model="m", messages=user("hi"), max_tokens=1)
    assert (done.choices[0].message.content, done.choices[0].finish_reason) == ("lorem", "length")
    done = await oc.chat.completions.create(model="m", messages=user("hi"), stop="dolor")
    assert (done.choices[0].message.content, done.choices[0].finish_reason) == ("lorem ipsum", "stop")
    stream = await oc.chat.completions.create(model="m", messages=user("hi"), stop=["q", "sit"], stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "lorem ipsum dolor"
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is None


@pytest.mark.parametrize(
    ("status", "exc", "code"),
    [
        (400, openai.BadRequestError, None),
        (404, openai.NotFoundError, "model_not_found"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, None),
        (503, openai.InternalServerError, None),
    ],
)
async def test_openai_status_errors(
    oc: openai.AsyncOpenAI, status: int, exc: type[Exception], code: str | None
) -> None:
    for stream in (False, True):
        with pytest.raises(exc) as info:
            await oc.chat.completions.create(
                model="m", messages=user(f"[[fake status={status} retry_after=1]]"), stream=stream
            )
        err = info.value
        assert isinstance(err, openai.APIStatusError)
        assert err.status_code == status and err.code == code and err.response.headers["retry-after"] == "1"


async def test_openai_auth_failures_and_mid_stream(port: int, oc: openai.AsyncOpenAI) -> None:
    bad = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        await bad.chat.completions.create(model="m", messages=user("hi"))
    await bad.close()
    assert info.value.code == "invalid_api_key"

    stream = await oc.chat.completions.create(model="m", messages=user("[[fake error_after=2]]"), stream=True)
    seen = []
    with pytest.raises(openai.APIError) as err:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "lorem"] and err.value.type == "server_error"
    assert not isinstance(err.value, openai.APIStatusError)
    stream = await oc.chat.completions.create(model="m", messages=user("[[fake cut_after=3]]"), stream=True)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "lorem", " ipsum"]
    models = await oc.models.list()
    assert [m.id for m in models.data] == ["fake-claude", "fake-gpt"] and models.data[0].owned_by == "fake"


# ---------------------------------------------------------------- shared behaviour


async def test_counting_rule_matches_across_formats() -> None:
    anthropic_body = {
        "system": [{"type": "text", "text": "You are terse."}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look at this"},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm hmm", "signature": "s"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": TOOL_INPUT},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny and warm"}]},
        ],
    }  # fmt: skip
    openai_body = {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "look at this"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ]},
            {"role": "assistant", "content": "calling", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"city":"Paris","days":3}'}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny and warm"},
        ],
    }  # fmt: skip
    expected = 3 + 3 + 50 + 1 + 4 + 3 + 10
    assert count_input_tokens(anthropic_body, "anthropic") == expected
    assert count_input_tokens(openai_body, "openai") == expected


async def test_last_user_turn_rule(ac: anthropic.AsyncAnthropic, oc: openai.AsyncOpenAI) -> None:
    a_msgs = [
        {"role": "user", "content": "weather [[fake tool=w]]"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "[[fake tokens=1]]"}],
        },
    ]
    msg = await ac.messages.create(model="m", max_tokens=50, messages=a_msgs)
    assert (msg.stop_reason, msg.content[0].text) == ("end_turn", DEFAULT_TEXT)
    o_msgs = [
        {"role": "user", "content": "weather [[fake tool=w]]"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "[[fake tokens=1]]"},
        {"role": "user", "content": [{"type": "text", "text": "and now? [[fake tokens=2]]"}]},
    ]  # fmt: skip
    done = await oc.chat.completions.create(model="m", messages=o_msgs)
    assert (done.choices[0].finish_reason, done.choices[0].message.content) == ("stop", "lorem ipsum")


async def test_knob_parsing() -> None:
    knobs = parse_knobs("a [[fake tokens=3 tool=x]] b [[fake tokens=4]]", "thinking=2; tokens=5")
    assert (knobs.tokens, knobs.tool, knobs.thinking, knobs.tool_names) == (5, "x", 2, ["x"])
    assert parse_knobs("no directive here").tokens is None
    for bad in ("[[fake tokens=x]]", "[[fake nope=1]]", "[[fake status=200]]", "[[fake tool=a/b]]"):
        with pytest.raises(KnobError):
            parse_knobs(bad)


async def test_recorded_requests(ac: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    async with http.delete("/_fake/requests") as r:
        assert r.status == 204
    await ac.messages.create(
        model="m",
        max_tokens=5,
        messages=user("hi"),
        extra_headers={"anthropic-beta": "b1,b2", "X-Custom": "v"},
    )
    await ac.messages.count_tokens(model="m", messages=user("hi"))
    async with http.get("/_fake/requests") as r:
        log = await r.json()
    assert [e["path"] for e in log] == ["/v1/messages", "/v1/messages/count_tokens"]
    first = log[0]
    assert first["body"] == {"max_tokens": 5, "messages": user("hi"), "model": "m"}
    assert first["headers"]["anthropic-beta"] == "b1,b2" and first["headers"]["x-custom"] == "v"
    assert first["headers"]["authorization"] == f"Bearer {KEY}"
    async with http.get("/_fake/requests?limit=1") as r:
        assert [e["path"] for e in await r.json()] == ["/v1/messages/count_tokens"]


async def test_pacing_knobs(ac: anthropic.AsyncAnthropic, oc: openai.AsyncOpenAI) -> None:
    started = time.perf_counter()
    await ac.messages.create(model="m", max_tokens=5, messages=user("[[fake ttfb_ms=120]]"))
    assert time.perf_counter() - started >= 0.11
    started = time.perf_counter()
    stream = await oc.chat.completions.create(
        model="m", messages=user("[[fake delay_ms=30 tokens=2]]"), stream=True
    )
    stamps = [time.perf_counter() - started async for _ in stream]
    assert len(stamps) == 4 and stamps[-1] >= 0.085 and stamps[-1] - stamps[0] >= 0.085


async def test_client_disconnect_ends_handler() -> None:
    """On a runner without handler cancellation, a stalled handler still ends once the client leaves."""
    runner = web.AppRunner(create_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    baseline = len(asyncio.all_tasks())
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": user("[[fake stall_after=2]]")}
    url = f"http://127.0.0.1:{port}/v1/messages"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert (await resp.content.readuntil(b"\n\n")).startswith(b"event: message_start")
        assert len(asyncio.all_tasks()) > baseline  # the stalled handler
    for _ in range(100):
        if len(asyncio.all_tasks()) <= baseline:
            break
        await asyncio.sleep(0.01)
    assert len(asyncio.all_tasks()) <= baseline
    await runner.cleanup()
