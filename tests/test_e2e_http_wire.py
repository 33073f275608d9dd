"""End to end over raw HTTP (httpx), the requests that succeed: the README's curl examples frame
by frame (the Anthropic and OpenAI SSE framing), authentication headers, and what reaches the
upstream (its own key, never the client's; the client's beta headers).

``gateway`` runs on both database backends. The errors (bad and revoked keys, malformed and
oversize requests, routes, a dead upstream) are in tests/test_e2e_http_errors.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from claudestore.fake_upstream.script import THINK_WORDS, WORDS
from tests.support.e2e_http import HELLO, anthropic_headers, check_request_ids, openai_headers
from tests.support.servers import UPSTREAM_KEY, FakeUpstream, Gateway

MODELS = ["claude-test", "gpt-test"]
UPSTREAM_FORMAT = {"claude-test": "anthropic", "gpt-test": "openai"}


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def upstream_seen(
    fake_upstream: FakeUpstream,
) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """``FakeUpstream.last_request()`` over one shared async client."""
    async with httpx.AsyncClient(base_url=fake_upstream.url) as client:

        async def last() -> dict[str, Any]:
            resp = await client.get("/_fake/requests", params={"limit": 1})
            resp.raise_for_status()
            seen: dict[str, Any] = resp.json()[-1]
            return seen

        yield last


def words(n: int, source: tuple[str, ...] = WORDS) -> str:
    return " ".join(source[k % len(source)] for k in range(n))


def sse_frames(raw: bytes) -> list[list[str]]:
    """The lines of every SSE frame; asserts LF framing and a blank line after the last frame."""
    text = raw.decode("utf-8")
    assert not text.startswith("\ufeff")
    assert "\r" not in text
    assert text.endswith("\n\n"), text[-200:]
    frames = text[:-2].split("\n\n")
    assert all(frames), "empty frame (stray blank lines)"
    return [frame.split("\n") for frame in frames]


def anthropic_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Every frame is exactly ``event: NAME`` + one ``data:`` JSON line whose type is NAME."""
    events = []
    for lines in sse_frames(raw):
        assert len(lines) == 2, lines
        assert lines[0].startswith("event: "), lines
        assert lines[1].startswith("data: "), lines
        name = lines[0][len("event: ") :]
        data = json.loads(lines[1][len("data: ") :])
        assert isinstance(data, dict) and data.get("type") == name, lines
        events.append((name, data))
    return events


def check_anthropic_grammar(events: list[tuple[str, dict[str, Any]]]) -> None:
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    assert names[-2] == "message_delta" and names.count("message_delta") == 1
    assert isinstance(events[0][1]["message"]["usage"], dict)
    assert isinstance(events[-2][1]["usage"]["output_tokens"], int)
    open_index, next_index = None, 0
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name in ("content_block_delta", "content_block_stop"):
            assert data["index"] == open_index
            if name == "content_block_stop":
                open_index = None
        else:
            assert name == "ping", name
    assert open_index is None


def openai_chunks(raw: bytes) -> list[dict[str, Any]]:
    """Only ``data:`` lines (and ``:`` comments), no ``event:``/``id:``/``retry:``; ends with [DONE]."""
    frames = sse_frames(raw)
    chunks = []
    assert frames[-1] == ["data: [DONE]"], frames[-1]
    for lines in frames[:-1]:
        data_lines = [line for line in lines if not line.startswith(":")]
        for line in lines:
            assert line.startswith(("data: ", ":")), line
        if not data_lines:
            continue  # a keep-alive comment
        assert len(data_lines) == 1, lines
        chunk = json.loads(data_lines[0][len("data: ") :])
        assert isinstance(chunk, dict)
        chunks.append(chunk)
    assert sum(1 for lines in frames if lines == ["data: [DONE]"]) == 1
    return chunks


# --- the README examples ---------------------------------------------------------------------


async def test_readme_messages_example(http: httpx.AsyncClient, gateway: Gateway, model: str) -> None:
    """``curl /v1/messages -H x-api-key -H anthropic-version -d {...}`` (non-streaming)."""
    resp = await http.post(
        "/v1/messages",
        headers=anthropic_headers(gateway),
        content=json.dumps({"model": model, "max_tokens": 1024, "messages": HELLO}).encode(),
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    check_request_ids(resp)
    body = resp.json()
    assert set(body) >= {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert body["type"] == "message" and body["role"] == "assistant" and body["model"] == model
    assert body["id"].startswith("msg_")
    assert body["content"] == [{"type": "text", "text": words(8), "citations": None}] or body["content"] == [
        {"type": "text", "text": words(8)}
    ]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    usage = body["usage"]
    for field in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert isinstance(usage[field], int), usage
    assert usage["output_tokens"] == 8


async def test_readme_chat_stream_example(http: httpx.AsyncClient, gateway: Gateway, model: str) -> None:
    """``curl -N /v1/chat/completions -H "Authorization: Bearer" -d {"stream": true, ...}``."""
    payload = {"model": model, "stream": True, "messages": HELLO}
    async with http.stream(
        "POST", "/v1/chat/completions", headers=openai_headers(gateway), content=json.dumps(payload).encode()
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        check_request_ids(resp)
        raw = await resp.aread()
    chunks = openai_chunks(raw)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {model}
    assert all(len(c["choices"]) == 1 for c in chunks)  # no usage chunk: the client did not ask
    assert all(c.get("usage") is None for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == words(8)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["stop"]


async def test_messages_stream_frames(http: httpx.AsyncClient, gateway: Gateway, model: str) -> None:
    """Every Anthropic frame: an ``event:`` line and a ``data:`` JSON whose type is that name."""
    payload = {
        "model": model,
        "max_tokens": 200,
        "stream": True,
        "messages": [{"role": "user", "content": "Go [[fake thinking=2 tokens=3 tool=get_weather]]"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    }
    async with http.stream("POST", "/v1/messages", headers=anthropic_headers(gateway), json=payload) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-cache"
        check_request_ids(resp)
        raw = await resp.aread()
    events = anthropic_events(raw)
    check_anthropic_grammar(events)
    starts = [data["content_block"]["type"] for name, data in events if name == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == words(2, THINK_WORDS)
    assert "".join(d.get("text", "") for d in deltas) == words(3)
    assert json.loads("".join(d.get("partial_json", "") for d in deltas)) == {"city": "Paris", "days": 3}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[0][1]["message"]["model"] == model


async def test_chat_stream_frames_with_usage(http: httpx.AsyncClient, gateway: Gateway, model: str) -> None:
    payload = {"model": model, "stream": True, "stream_options": {"include_usage": True}, "messages": HELLO}
    resp = await http.post("/v1/chat/completions", headers=openai_headers(gateway), json=payload)
    assert resp.status_code == 200
    chunks = openai_chunks(resp.content)
    assert chunks[-1]["choices"] == [] and isinstance(chunks[-1]["usage"], dict)
    assert all(c["choices"] and c.get("usage") is None for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] == 8


# --- authentication and headers --------------------------------------------------------------


async def test_bearer_on_messages(http: httpx.AsyncClient, gateway: Gateway, model: str) -> None:
    resp = await http.post(
        "/v1/messages",
        headers={"authorization": f"Bearer {gateway.key}", "anthropic-version": "2026-10-21"},
        json={"model": model, "max_tokens": 20, "messages": HELLO},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["text"] == words(8)


async def test_beta_query_ignored(http: httpx.AsyncClient, gateway: Gateway, model: str) -> None:
    resp = await http.post(
        "/v1/messages?beta=true",
        headers=anthropic_headers(gateway),
        json={"model": model, "max_tokens": 20, "messages": HELLO},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "message"


def assert_gateway_key_absent(headers: dict[str, str], gateway: Gateway) -> None:
    for name, value in headers.items():
        assert gateway.key not in value, f"the client's gateway key leaked upstream in {name!r}"


async def test_upstream_headers_anthropic(
    http: httpx.AsyncClient, gateway: Gateway, upstream_seen: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    resp = await http.post(
        "/v1/messages",
        headers=anthropic_headers(gateway, **{"anthropic-beta": "beta-one-2025,beta-two-2026"}),
        json={"model": "claude-test", "max_tokens": 20, "messages": HELLO},
    )
    assert resp.status_code == 200, resp.text
    seen = await upstream_seen()
    assert seen["path"] == "/v1/messages"
    headers = seen["headers"]
    assert headers["anthropic-beta"] == "beta-one-2025,beta-two-2026"
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert_gateway_key_absent(headers, gateway)

    # Bearer from the client (A2 style): the upstream still gets the upstream key only.
    resp = await http.post(
        "/v1/messages/count_tokens",
        headers={"authorization": f"Bearer {gateway.key}", "anthropic-beta": "beta-one-2025"},
        json={"model": "claude-test", "messages": HELLO},
    )
    assert resp.status_code == 200, resp.text
    headers = (await upstream_seen())["headers"]
    assert headers["x-api-key"] == UPSTREAM_KEY and headers["anthropic-beta"] == "beta-one-2025"
    assert headers.get("authorization") is None
    assert_gateway_key_absent(headers, gateway)


@pytest.mark.parametrize("endpoint", ["/v1/messages", "/v1/chat/completions"])
async def test_upstream_key_never_client_key(
    http: httpx.AsyncClient,
    gateway: Gateway,
    upstream_seen: Callable[[], Awaitable[dict[str, Any]]],
    model: str,
    endpoint: str,
) -> None:
    if endpoint == "/v1/messages":
        body: dict[str, Any] = {"model": model, "max_tokens": 20, "messages": HELLO}
        headers = anthropic_headers(gateway)
    else:
        body = {"model": model, "messages": HELLO}
        headers = openai_headers(gateway)
    resp = await http.post(endpoint, headers=headers, json=body)
    assert resp.status_code == 200, resp.text
    seen = (await upstream_seen())["headers"]
    if UPSTREAM_FORMAT[model] == "anthropic":
        assert seen["x-api-key"] == UPSTREAM_KEY
    else:
        assert seen["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert "anthropic-beta" not in seen and "x-api-key" not in seen
    assert_gateway_key_absent(seen, gateway)
