"""End to end over raw HTTP (httpx), the errors: missing, bad and revoked keys, malformed
requests, body limits, routes (unknown paths, wrong methods; and ``/healthz``), and a dead
upstream.

``gateway`` runs on both database backends; ``down_gateway`` (this module) is a gateway on
SQLite whose upstreams point at a closed port. Every error is checked to be in the shape of
the API that was called, to carry the request id headers, and never to contain a traceback.
The requests that succeed are in tests/test_e2e_http_wire.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.e2e_http import HELLO, anthropic_headers, check_request_ids, openai_headers
from tests.support.servers import (
    CLI,
    UPSTREAM_KEY,
    Gateway,
    create_key,
    free_port,
    stop,
    wait_http,
)

MAX_BODY_BYTES = 32 * 1024 * 1024  # server.max_body_bytes default; the test config keeps it


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


# --- authentication errors -------------------------------------------------------------------


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
