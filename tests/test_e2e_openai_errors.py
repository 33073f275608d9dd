"""End to end: the official OpenAI SDK's typed errors and failures mid-stream through a real
gateway, for both upstream formats (see test_e2e_openai_sdk.py for the successful paths).
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import Gateway
from tests.support.upstream_log import (
    collect,
    user,
    words,
)

MODELS = ["gpt-test", "claude-test"]


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- errors ----------------------------------------------------------------------------------


def check_error(exc: openai.APIStatusError, status: int) -> dict[str, Any]:
    assert exc.status_code == status
    raw = exc.response.json()
    assert set(raw) == {"error"}
    error = raw["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    rid = exc.response.headers["x-request-id"]
    assert rid.startswith("req_") and exc.request_id == rid
    assert exc.code == error["code"] and exc.type == error["type"] and exc.param == error["param"]
    error_obj: dict[str, Any] = error
    return error_obj


async def test_authentication_error(gateway: Gateway) -> None:
    client = openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key="sk-cs-" + secrets.token_urlsafe(32), max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(model="gpt-test", messages=user("Hi"))  # type: ignore[arg-type]
    error = check_error(info.value, 401)
    assert error["code"] == "invalid_api_key"


async def test_bad_request_n(oai: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await oai.chat.completions.create(model=model, messages=user("Hi"), n=2)  # type: ignore[arg-type]
    error = check_error(info.value, 400)
    assert error["type"] == "invalid_request_error" and error["param"] == "n"


async def test_bad_request_invalid_json(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        resp = await http.post(
            "/v1/chat/completions",
            content=b'{"model": "gpt-test", "messages": [',
            headers={"authorization": f"Bearer {gateway.key}", "content-type": "application/json"},
        )
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == "invalid_request_error"
    assert "JSON" in body["error"]["message"]
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert resp.headers["x-request-id"].startswith("req_")


async def test_not_found_model(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await oai.chat.completions.create(model="gpt-unknown-9", messages=user("Hi"))  # type: ignore[arg-type]
    error = check_error(info.value, 404)
    assert error["code"] == "model_not_found"
    assert "gpt-unknown-9" in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_rate_limit_error(oai: openai.AsyncOpenAI, model: str, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        await oai.chat.completions.create(
            model=model,
            messages=user("Hi [[fake status=429 retry_after=2]]"),  # type: ignore[arg-type]
            stream=stream,
        )
    error = check_error(info.value, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(("upstream_status", "status"), [(529, 503), (500, 500)])
async def test_upstream_server_errors(
    oai: openai.AsyncOpenAI, model: str, upstream_status: int, status: int
) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        await oai.chat.completions.create(
            model=model,
            messages=user(f"Hi [[fake status={upstream_status}]]"),  # type: ignore[arg-type]
        )
    error = check_error(info.value, status)
    assert error["type"] == "server_error"
    assert "Upstream" in error["message"]


@pytest.mark.parametrize("knob", ["error_after=4", "cut_after=4"])
async def test_mid_stream_failure(oai: openai.AsyncOpenAI, model: str, knob: str) -> None:
    stream = await oai.chat.completions.create(
        model=model,
        messages=user(f"Hi [[fake {knob}]]"),  # type: ignore[arg-type]
        stream=True,
    )
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            seen.append(chunk)
    exc = info.value
    assert not isinstance(exc, openai.APIStatusError)  # an in-stream error: no HTTP status
    assert exc.message and exc.type == "server_error"
    assert seen and seen[0].choices[0].delta.role == "assistant"
    assert not any(c.choices and c.choices[0].finish_reason for c in seen)


async def test_request_id_headers(oai: openai.AsyncOpenAI, model: str) -> None:
    raw = await oai.chat.completions.with_raw_response.create(model=model, messages=user("Hi"))  # type: ignore[arg-type]
    rid = raw.headers["x-request-id"]
    assert rid.startswith("req_") and raw.headers["request-id"] == rid
    completion = raw.parse()
    assert completion._request_id == rid


# The upstream connection breaks when the answer is complete and only its end marker is missing.
COMPLETE_THEN_CUT = {
    # OpenAI (the gateway asks for usage), tokens=2: role, 2 texts, finish_reason, usage | [DONE]
    "gpt-test": "[[fake tokens=2 cut_after=5]]",
    # Anthropic, tokens=2: message_start, ping, block start, 2 deltas, block stop, message_delta | message_stop
    "claude-test": "[[fake tokens=2 cut_after=7]]",
}


async def test_cut_after_complete_answer(oai: openai.AsyncOpenAI, model: str) -> None:
    """No error after a whole answer: EOF without ``message_stop`` / ``[DONE]`` is tolerated by the SDKs."""
    stream = await oai.chat.completions.create(
        model=model,
        messages=user("Hi " + COMPLETE_THEN_CUT[model]),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = await collect(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == words(2)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
