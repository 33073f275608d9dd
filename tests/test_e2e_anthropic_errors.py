"""End to end: the official Anthropic SDK's typed errors and failures mid-stream through a real
gateway, for both upstream formats (see test_e2e_anthropic_sdk.py for the successful paths).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Omit

from tests.support.servers import Gateway
from tests.support.upstream_log import (
    UPSTREAM_FORMAT,
    collect,
    user,
    words,
)

MODELS = ["claude-test", "gpt-test"]


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- errors ----------------------------------------------------------------------------------


def check_error(exc: anthropic.APIStatusError, status: int, kind: str) -> dict[str, Any]:
    assert exc.status_code == status
    body = exc.body
    assert isinstance(body, dict), body
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]
    rid = exc.response.headers["request-id"]
    assert rid.startswith("req_") and body["request_id"] == rid == exc.request_id
    assert exc.response.headers["x-request-id"] == rid
    return body


@pytest.mark.parametrize("key", ["well-formed", "malformed"])
async def test_authentication_error_bad_key(gateway: Gateway, key: str) -> None:
    raw = "sk-cs-" + secrets.token_urlsafe(32) if key == "well-formed" else "sk-cs-wrong"
    client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=raw, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        await client.messages.create(model="claude-test", max_tokens=10, messages=user("Hi"))
    check_error(info.value, 401, "authentication_error")


async def test_authentication_error_no_key(gateway: Gateway) -> None:
    client = anthropic.AsyncAnthropic(
        base_url=gateway.url,
        api_key=None,
        max_retries=0,
        default_headers={"Authorization": Omit(), "X-Api-Key": Omit()},
    )
    with pytest.raises(anthropic.AuthenticationError) as info:
        await client.messages.create(model="claude-test", max_tokens=10, messages=user("Hi"))
    assert "authorization" not in info.value.response.request.headers
    assert "x-api-key" not in info.value.response.request.headers
    body = check_error(info.value, 401, "authentication_error")
    assert "Missing API key" in body["error"]["message"]


async def test_bad_request_error(claude: anthropic.AsyncAnthropic, model: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude.messages.create(
            model=model,
            max_tokens=10,
            messages=[{"role": "robot", "content": "Hi"}],  # type: ignore[typeddict-item]
        )
    body = check_error(info.value, 400, "invalid_request_error")
    assert "messages.0.role" in body["error"]["message"]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"model": "claude-test", "messages": [{"role": "user", "content": "Hi"}]}', "max_tokens"),
        (b'{"model": "claude-test", "max_tokens": 10, "messages": [', "JSON"),
    ],
    ids=["max_tokens-missing", "invalid-json"],
)
async def test_bad_request_raw(gateway: Gateway, content: bytes, field: str) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        resp = await http.post(
            "/v1/messages",
            content=content,
            headers={
                "x-api-key": gateway.key,
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
        )
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert field in body["error"]["message"]
    assert body["request_id"] == resp.headers["request-id"]


async def test_not_found_error(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        await claude.messages.create(model="claude-unknown-9", max_tokens=10, messages=user("Hi"))
    body = check_error(info.value, 404, "not_found_error")
    assert "claude-unknown-9" in body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_rate_limit_error(claude: anthropic.AsyncAnthropic, model: str, stream: bool) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        await claude.messages.create(
            model=model, max_tokens=10, stream=stream, messages=user("Hi [[fake status=429 retry_after=2]]")
        )
    check_error(info.value, 429, "rate_limit_error")
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.type == "rate_limit_error"


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_overloaded_error(claude: anthropic.AsyncAnthropic, model: str, stream: bool) -> None:
    with pytest.raises(anthropic.OverloadedError) as info:
        await claude.messages.create(
            model=model, max_tokens=10, stream=stream, messages=user("Hi [[fake status=529]]")
        )
    check_error(info.value, 529, "overloaded_error")


async def test_internal_server_error(claude: anthropic.AsyncAnthropic, model: str) -> None:
    with pytest.raises(anthropic.InternalServerError) as info:
        await claude.messages.create(model=model, max_tokens=10, messages=user("Hi [[fake status=500]]"))
    body = check_error(info.value, 500, "api_error")
    assert "Upstream" in body["error"]["message"]


async def test_mid_stream_error(claude: anthropic.AsyncAnthropic, model: str) -> None:
    stream = await claude.messages.create(
        model=model, max_tokens=100, stream=True, messages=user("Hi [[fake error_after=4]]")
    )
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async for ev in stream:
            seen.append(ev.type)
    assert seen[0] == "message_start" and "message_stop" not in seen
    # The Anthropic upstream says overloaded_error; the OpenAI upstream's server_error maps to api_error.
    expected = "overloaded_error" if UPSTREAM_FORMAT[model] == "anthropic" else "api_error"
    assert info.value.type == expected
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == expected


async def test_mid_stream_cut_sdk(claude: anthropic.AsyncAnthropic, model: str) -> None:
    stream = await claude.messages.create(
        model=model, max_tokens=100, stream=True, messages=user("Hi [[fake cut_after=4]]")
    )
    with pytest.raises(anthropic.APIStatusError) as info:
        await collect(stream)
    assert info.value.type == "api_error"


async def test_mid_stream_cut_raw(gateway: Gateway, model: str) -> None:
    """An upstream that dies mid-stream: the client's last frame is ``event: error`` with JSON data."""
    payload = {"model": model, "max_tokens": 100, "stream": True, "messages": user("Hi [[fake cut_after=4]]")}
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
        http.stream("POST", "/v1/messages", json=payload, headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = (await resp.aread()).decode()
    assert raw.endswith("\n\n")
    frames = [f for f in raw.split("\n\n") if f.strip()]
    assert frames[0].startswith("event: message_start\n")
    last = frames[-1].split("\n")
    assert last[0] == "event: error"
    assert last[1].startswith("data: ") and len(last) == 2
    data = json.loads(last[1][len("data: ") :])
    assert data["type"] == "error"
    assert data["error"]["type"] == "api_error" and data["error"]["message"]
    assert not any(f.startswith("event: message_stop") for f in frames)


# The upstream connection breaks when the answer is complete and only its end marker is missing.
COMPLETE_THEN_CUT = {
    # Anthropic, tokens=2: message_start, ping, block start, 2 deltas, block stop, message_delta | message_stop
    "claude-test": "[[fake tokens=2 cut_after=7]]",
    # OpenAI (the gateway asks for usage), tokens=2: role, 2 texts, finish_reason, usage | [DONE]
    "gpt-test": "[[fake tokens=2 cut_after=5]]",
}


async def test_cut_after_complete_answer(claude: anthropic.AsyncAnthropic, model: str) -> None:
    """No error after a whole answer: EOF without ``message_stop`` / ``[DONE]`` is tolerated by the SDKs."""
    async with claude.messages.stream(
        model=model, max_tokens=100, messages=user("Hi " + COMPLETE_THEN_CUT[model])
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == words(2)  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 2
