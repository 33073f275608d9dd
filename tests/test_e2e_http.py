"""End to end over raw HTTP (httpx): the README's curl examples frame by frame, authentication
headers, what reaches the upstream, malformed requests, limits, routes, and a dead upstream.

``gateway`` runs on both database backends; ``down_gateway`` (this module) is a gateway on
SQLite whose upstreams point at a closed port. Every error is checked to be in the shape of
the API that was called, to carry the request id headers, and never to contain a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from claudestore.fake_upstream.script import THINK_WORDS, WORDS
from tests.support.servers import (
    CLI,
    UPSTREAM_KEY,
    FakeUpstream,
    Gateway,
    create_key,
    free_port,
    stop,
    wait_http,
)

MODELS = ["claude-test", "gpt-test"]
UPSTREAM_FORMAT = {"claude-test": "anthropic", "gpt-test": "openai"}
HELLO = [{"role": "user", "content": "Hello, Claude"}]
MAX_BODY_BYTES = 32 * 1024 * 1024  # server.max_body_bytes default; the test config keeps it


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
async def http(
    gateway: Gateway,
    revocation_probe: asyncio.Task[dict[str, Any]],
    down_gateway_boot: asyncio.Task[Gateway],
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``gateway``. Taking it also starts, in the background, the slow parts of
    this module (the revocation probe's cache wait, the boot of ``down_gateway``), so that they
    overlap the other tests instead of adding to the run time."""
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


def anthropic_headers(gateway: Gateway, **extra: str) -> dict[str, str]:
    return {
        "x-api-key": gateway.key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **extra,
    }


def openai_headers(gateway: Gateway, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.key}", "content-type": "application/json", **extra}


def words(n: int, source: tuple[str, ...] = WORDS) -> str:
    return " ".join(source[k % len(source)] for k in range(n))


def check_request_ids(resp: httpx.Response) -> str:
    rid = resp.headers.get("request-id")
    assert rid is not None and rid.startswith("req_"), dict(resp.headers)
    assert resp.headers.get("x-request-id") == rid
    return rid


def check_no_traceback(resp: httpx.Response) -> None:
    text = resp.text
    assert "Traceback" not in text and 'File "' not in text, text[:500]


def check_anthropic_error(resp: httpx.Response, status: int, kind: str) -> str:
    """An Anthropic error envelope; returns the message."""
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    check_no_traceback(resp)
    rid = check_request_ids(resp)
    body = resp.json()
    assert set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error" and body["request_id"] == rid
    assert body["error"]["type"] == kind, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def check_openai_error(resp: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """An OpenAI error envelope; returns the error object."""
    if status is not None:
        assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    check_no_traceback(resp)
    check_request_ids(resp)
    body = resp.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    return error


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


async def revocation_flow(gateway: Gateway) -> dict[str, Any]:
    """Create a key, use it (the authenticator now caches it as good for up to 5 s), revoke it with
    ``claudestore keys revoke PREFIX``, then poll until the gateway refuses it (at most 7 s).

    Runs as a background task (see ``revocation_probe``) so that the cache wait overlaps the
    other tests; it only calls endpoints that never reach the upstream while the key is accepted
    (``GET /v1/models``), so it cannot disturb the tests that read the fake upstream's log.
    """
    loop = asyncio.get_running_loop()
    key = await asyncio.to_thread(create_key, gateway.config_path, "to-revoke")
    anthropic_auth = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    result: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        result["before"] = await client.get("/v1/models", headers=anthropic_auth)
        result["cli"] = await asyncio.to_thread(gateway.cli, "keys", "revoke", key[: len("sk-cs-") + 8])
        revoked_at = loop.time()
        while True:
            resp = await client.get("/v1/models", headers=anthropic_auth)
            result["waited"] = loop.time() - revoked_at
            if resp.status_code != 200 or result["waited"] > 7.0:
                break
            await asyncio.sleep(0.2)
        result["models"] = resp
        if resp.status_code == 200:
            return result  # still accepted after 7 s: fails in the test, and never reaches the upstream
        result["messages"] = await client.post(
            "/v1/messages",
            headers=anthropic_auth,
            json={"model": "claude-test", "max_tokens": 10, "messages": HELLO},
        )
        result["chat"] = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-test", "messages": HELLO},
        )
    return result


@pytest.fixture(scope="module")
async def revocation_probe(gateway: Gateway) -> AsyncIterator[asyncio.Task[dict[str, Any]]]:
    task = asyncio.ensure_future(revocation_flow(gateway))
    yield task
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "not-a-key"},
        {"authorization": "Bearer sk-cs-" + "A" * 43},
        {"authorization": "Basic abc"},
    ],
    ids=["missing", "malformed", "unknown", "not-bearer"],
)
async def test_bad_keys_both_shapes(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    resp = await http.post(
        "/v1/messages",
        headers={"anthropic-version": "2023-06-01", **headers},
        json={"model": "claude-test", "max_tokens": 5, "messages": HELLO},
    )
    check_anthropic_error(resp, 401, "authentication_error")
    resp = await http.post(
        "/v1/chat/completions", headers=headers, json={"model": "gpt-test", "messages": HELLO}
    )
    error = check_openai_error(resp, 401)
    assert error["code"] in ("invalid_api_key", "missing_api_key")
    resp = await http.get("/v1/models", headers=headers)
    check_openai_error(resp, 401)


# --- malformed requests ----------------------------------------------------------------------

MESSAGES_BAD: list[tuple[str, bytes, str]] = [
    (
        "max_tokens-string",
        b'{"model":"claude-test","max_tokens":"ten","messages":[{"role":"user","content":"hi"}]}',
        "max_tokens",
    ),
    (
        "max_tokens-missing",
        b'{"model":"claude-test","messages":[{"role":"user","content":"hi"}]}',
        "max_tokens",
    ),
    ("messages-not-list", b'{"model":"claude-test","max_tokens":10,"messages":"hi"}', "messages"),
    ("messages-missing", b'{"model":"claude-test","max_tokens":10}', "messages"),
    ("model-number", b'{"model":7,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}', "model"),
    (
        "content-number",
        b'{"model":"gpt-test","max_tokens":10,"messages":[{"role":"user","content":5}]}',
        "messages.0.content",
    ),
    ("array-body", b'[{"model":"claude-test"}]', "JSON object"),
    ("empty-body", b"", "empty"),
    ("truncated-json", b'{"model":"claude-test","max_tokens":10,"messa', "JSON"),
    ("not-json", b"model=claude-test", "JSON"),
]
CHAT_BAD: list[tuple[str, bytes, str]] = [
    (
        "max_tokens-string",
        b'{"model":"gpt-test","max_tokens":"ten","messages":[{"role":"user","content":"hi"}]}',
        "max_tokens",
    ),
    ("messages-not-list", b'{"model":"gpt-test","messages":"hi"}', "messages"),
    ("messages-missing", b'{"model":"gpt-test"}', "messages"),
    (
        "role-unknown",
        b'{"model":"claude-test","messages":[{"role":"robot","content":"hi"}]}',
        "messages[0].role",
    ),
    (
        "stream-string",
        b'{"model":"claude-test","stream":"yes","messages":[{"role":"user","content":"hi"}]}',
        "stream",
    ),
    ("n-2", b'{"model":"claude-test","n":2,"messages":[{"role":"user","content":"hi"}]}', "n"),
    ("array-body", b"[1, 2]", "JSON object"),
    ("empty-body", b"", "empty"),
    ("truncated-json", b'{"model":"gpt-test","messages":[{"role":"us', "JSON"),
]


@pytest.mark.parametrize(
    ("content", "mentions"), [c[1:] for c in MESSAGES_BAD], ids=[c[0] for c in MESSAGES_BAD]
)
async def test_messages_bad_request(
    http: httpx.AsyncClient, gateway: Gateway, content: bytes, mentions: str
) -> None:
    resp = await http.post("/v1/messages", headers=anthropic_headers(gateway), content=content)
    message = check_anthropic_error(resp, 400, "invalid_request_error")
    assert mentions in message, message


@pytest.mark.parametrize(("content", "mentions"), [c[1:] for c in CHAT_BAD], ids=[c[0] for c in CHAT_BAD])
async def test_chat_bad_request(
    http: httpx.AsyncClient, gateway: Gateway, content: bytes, mentions: str
) -> None:
    resp = await http.post("/v1/chat/completions", headers=openai_headers(gateway), content=content)
    error = check_openai_error(resp, 400)
    assert error["type"] == "invalid_request_error"
    assert mentions in error["message"], error


async def test_count_tokens_bad_request(http: httpx.AsyncClient, gateway: Gateway) -> None:
    resp = await http.post(
        "/v1/messages/count_tokens",
        headers=anthropic_headers(gateway),
        json={"model": "claude-test", "messages": 5},
    )
    assert "messages" in check_anthropic_error(resp, 400, "invalid_request_error")
    resp = await http.post("/v1/messages/count_tokens", headers=anthropic_headers(gateway), content=b"{")
    check_anthropic_error(resp, 400, "invalid_request_error")


# Request bodies that are JSON objects but wrong in unusual places: a client error (400), never a 500.
ODD_CHAT_BODIES: list[Any] = [
    pytest.param(
        {
            "model": "gpt-test",
            "messages": HELLO,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "sometimes",
        },
        id="tool_choice-unknown",
    ),
    pytest.param(
        {
            "model": "claude-test",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                }
            ],
        },
        id="image-not-base64",
    ),
    pytest.param(
        {
            "model": "claude-test",
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                    ],
                }
            ],
        },
        id="arguments-not-object",
    ),
    pytest.param(
        {
            "model": "gpt-test",
            "messages": HELLO,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": 5}},
        },
        id="allowed_tools-tools-number",
    ),
    pytest.param(
        {
            "model": "claude-test",
            "messages": [
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "function", "name": "f", "content": "y"},
            ],
        },
        id="function-after-leading-tool",
    ),
]


@pytest.mark.parametrize("body", ODD_CHAT_BODIES)
async def test_odd_chat_bodies_are_client_errors(
    http: httpx.AsyncClient, gateway: Gateway, body: Any
) -> None:
    resp = await http.post("/v1/chat/completions", headers=openai_headers(gateway), json=body)
    error = check_openai_error(resp)
    assert resp.status_code == 400, error
    assert error["type"] == "invalid_request_error"


async def test_oversize_body_anthropic(http: httpx.AsyncClient, gateway: Gateway) -> None:
    filler = b"a" * (MAX_BODY_BYTES + 1024 * 1024)  # ~33 MiB
    body = b'{"model":"claude-test","max_tokens":10,"messages":[{"role":"user","content":"' + filler + b'"}]}'
    resp = await http.post("/v1/messages", headers=anthropic_headers(gateway), content=body)
    message = check_anthropic_error(resp, 413, "request_too_large")
    assert str(MAX_BODY_BYTES) in message


async def test_oversize_body_chunked(http: httpx.AsyncClient, gateway: Gateway) -> None:
    """Without a Content-Length the gateway counts while reading."""

    async def body() -> AsyncIterator[bytes]:
        yield b'{"model":"claude-test","max_tokens":10,"messages":[{"role":"user","content":"'
        for _ in range(33):
            yield b"a" * (1024 * 1024)
        yield b'"}]}'

    resp = await http.post("/v1/messages", headers=anthropic_headers(gateway), content=body())
    check_anthropic_error(resp, 413, "request_too_large")


async def test_oversize_body_openai(http: httpx.AsyncClient, gateway: Gateway) -> None:
    body = (
        b'{"model":"gpt-test","messages":[{"role":"user","content":"' + b"a" * (MAX_BODY_BYTES + 1) + b'"}]}'
    )
    resp = await http.post("/v1/chat/completions", headers=openai_headers(gateway), content=body)
    error = check_openai_error(resp, 413)
    assert error["code"] == "request_too_large"


# --- routes ----------------------------------------------------------------------------------


async def test_unknown_route(http: httpx.AsyncClient, gateway: Gateway) -> None:
    resp = await http.post("/v1/nothing-here", headers=anthropic_headers(gateway), json={})
    assert "/v1/nothing-here" in check_anthropic_error(resp, 404, "not_found_error")
    resp = await http.get("/v2/chat/completions", headers=openai_headers(gateway))
    check_openai_error(resp, 404)


async def test_wrong_method(http: httpx.AsyncClient, gateway: Gateway) -> None:
    resp = await http.get("/v1/messages", headers=anthropic_headers(gateway))
    assert "POST" in check_anthropic_error(resp, 405, "invalid_request_error")
    resp = await http.get("/v1/chat/completions", headers=openai_headers(gateway))
    assert "POST" in check_openai_error(resp, 405)["message"]


async def test_healthz(http: httpx.AsyncClient) -> None:
    resp = await http.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    check_request_ids(resp)


# Last of the gateway tests: by now the background revocation probe has done its waiting.
async def test_revoked_key(revocation_probe: asyncio.Task[dict[str, Any]]) -> None:
    result = await asyncio.wait_for(revocation_probe, timeout=60)
    assert result["before"].status_code == 200, result["before"].text  # the new key worked
    assert "Revoked" in result["cli"]
    assert result["models"].status_code == 401, f"a revoked key still works after {result['waited']:.1f} s"
    assert result["waited"] <= 7.0
    message = check_anthropic_error(result["messages"], 401, "authentication_error")
    assert "revoked" in message.lower()
    error = check_openai_error(result["chat"], 401)
    assert "revoked" in error["message"].lower()


# --- an upstream that is down ----------------------------------------------------------------


def start_down_gateway(tmp: Path) -> Gateway:
    """A gateway (SQLite) whose two upstreams, one per format, point at a closed port."""
    dead = f"http://127.0.0.1:{free_port()}"
    database_url = f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}"
    config = {
        "database": {"url": database_url},
        "upstreams": [
            {"name": "dead-anthropic", "type": "anthropic", "base_url": dead, "api_key": UPSTREAM_KEY},
            {"name": "dead-openai", "type": "openai", "base_url": dead + "/v1", "api_key": UPSTREAM_KEY},
        ],
        "models": [
            {"id": "claude-dead", "upstream": "dead-anthropic"},
            {"id": "gpt-dead", "upstream": "dead-openai"},
        ],
    }
    config_path = tmp / "claudestore.yaml"
    config_path.write_text(yaml.safe_dump(config))
    key = create_key(config_path)
    port = free_port()
    log = tmp / "gateway.log"
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDESTORE_DATABASE_URL")}
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(config_path), "--port", str(port), "--log-level", "warning"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
    except BaseException:
        stop(proc)
        raise
    return Gateway(proc, port, key, config_path, database_url, log)


@pytest.fixture(scope="session")
async def down_gateway_boot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[asyncio.Task[Gateway]]:
    """Starts ``down_gateway`` in a thread, once per run; the first test that needs it waits for it."""
    task = asyncio.ensure_future(
        asyncio.to_thread(start_down_gateway, tmp_path_factory.mktemp("gateway-down"))
    )
    yield task
    with contextlib.suppress(BaseException):
        stop((await task).proc)


@pytest.fixture(scope="session")
async def down_gateway(down_gateway_boot: asyncio.Task[Gateway]) -> Gateway:
    return await asyncio.wait_for(down_gateway_boot, timeout=60)


@pytest.fixture(scope="session")
async def down_http(down_gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=down_gateway.url, timeout=30) as client:
        yield client


DEAD_UPSTREAM = {"claude-dead": "dead-anthropic", "gpt-dead": "dead-openai"}


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("dead_model", list(DEAD_UPSTREAM))
async def test_upstream_down_anthropic_shape(
    down_http: httpx.AsyncClient, down_gateway: Gateway, dead_model: str, stream: bool
) -> None:
    resp = await down_http.post(
        "/v1/messages",
        headers=anthropic_headers(down_gateway),
        json={"model": dead_model, "max_tokens": 10, "stream": stream, "messages": HELLO},
    )
    message = check_anthropic_error(resp, 529, "overloaded_error")  # before any byte: an HTTP error
    assert DEAD_UPSTREAM[dead_model] in message


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("dead_model", list(DEAD_UPSTREAM))
async def test_upstream_down_openai_shape(
    down_http: httpx.AsyncClient, down_gateway: Gateway, dead_model: str, stream: bool
) -> None:
    resp = await down_http.post(
        "/v1/chat/completions",
        headers=openai_headers(down_gateway),
        json={"model": dead_model, "stream": stream, "messages": HELLO},
    )
    error = check_openai_error(resp, 503)  # wire.md D.7: overloaded_error -> 503 for OpenAI clients
    assert error["type"] == "server_error"
    assert DEAD_UPSTREAM[dead_model] in error["message"]


async def test_upstream_down_count_tokens(down_http: httpx.AsyncClient, down_gateway: Gateway) -> None:
    for dead_model, upstream in DEAD_UPSTREAM.items():
        resp = await down_http.post(
            "/v1/messages/count_tokens",
            headers=anthropic_headers(down_gateway),
            json={"model": dead_model, "messages": HELLO},
        )
        assert upstream in check_anthropic_error(resp, 529, "overloaded_error")
