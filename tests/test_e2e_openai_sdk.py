"""End to end: the official OpenAI SDK against ``POST /v1/chat/completions`` of a real gateway.

Every test that takes ``model`` runs for ``gpt-test`` (an OpenAI-format upstream: pass-through)
and ``claude-test`` (an Anthropic upstream: translated), on both database backends. What the
client sees is checked against what the fake upstream actually received
(``fake_upstream.last_request()``, read right after the call: every test shares one fake).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
import yaml

from claudestore.fake_upstream.script import THINK_WORDS, TOOL_INPUT, count_input_tokens
from tests.support.servers import Gateway
from tests.support.upstream_log import (
    UPSTREAM_FORMAT,
    UpstreamLog,
    collect,
    user,
    words,
)

MODELS = ["gpt-test", "claude-test"]
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(32))).decode()


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def reasoning_of(obj: Any) -> str | None:
    """The non-standard ``reasoning_content`` the SDK keeps as an extra attribute."""
    value = obj.to_dict().get("reasoning_content")
    assert value is None or isinstance(value, str)
    return value


# --- generation ------------------------------------------------------------------------------


async def test_create_text(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str) -> None:
    completion = await oai.chat.completions.create(model=model, messages=user("Hello, Claude"))  # type: ignore[arg-type]
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == model
    assert isinstance(completion.created, int)
    (choice,) = completion.choices
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == words(8)
    assert not choice.message.tool_calls
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == await upstream.prompt_tokens(model)
    assert usage.completion_tokens == 8
    assert usage.total_tokens == usage.prompt_tokens + 8
    assert completion._request_id is not None and completion._request_id.startswith("req_")


async def test_stream_with_usage(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str) -> None:
    stream = await oai.chat.completions.create(
        model=model,
        messages=user("Stream it [[fake tokens=5 cache_read=7 cache_write=3]]"),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    assert stream.response.headers["x-request-id"].startswith("req_")
    chunks = await collect(stream)
    prompt = await upstream.prompt_tokens(model, cache_read=7, cache_write=3)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {model}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    # role only in the first chunk
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    # the usage chunk is last, with no choices; every other chunk has usage null
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None and c.choices for c in chunks[:-1])
    assert last.usage.prompt_tokens == prompt
    assert last.usage.completion_tokens == 5
    assert last.usage.total_tokens == prompt + 5
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 7
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == words(5)
    finishes = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-2].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "options", [None, {"include_usage": False}], ids=["no-options", "include_usage-false"]
)
async def test_stream_without_usage(
    oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str, options: dict[str, Any] | None
) -> None:
    extra: dict[str, Any] = {} if options is None else {"stream_options": options}
    stream = await oai.chat.completions.create(
        model=model,
        messages=user("Stream it [[fake tokens=3]]"),  # type: ignore[arg-type]
        stream=True,
        **extra,
    )
    chunks = await collect(stream)
    body = await upstream.body(model)
    if UPSTREAM_FORMAT[model] == "openai":  # the gateway asks for usage anyway, to bill
        assert body["stream_options"]["include_usage"] is True
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks if c.usage]
    assert all(c.choices for c in chunks)  # no `choices: []` usage chunk
    assert all("usage" not in c.to_dict() or c.to_dict()["usage"] is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == words(3)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"


async def test_stream_helper(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str) -> None:
    async with oai.chat.completions.stream(
        model=model,
        messages=user("Use the helper [[fake tokens=4]]"),  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [ev.delta async for ev in stream if ev.type == "content.delta"]
        final = await stream.get_final_completion()
    assert "".join(deltas) == words(4)
    (choice,) = final.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == words(4)
    assert choice.finish_reason == "stop"
    assert final.model == model
    assert final.usage is not None
    assert final.usage.prompt_tokens == await upstream.prompt_tokens(model)
    assert final.usage.completion_tokens == 4


async def test_tools_non_stream(oai: openai.AsyncOpenAI, model: str) -> None:
    completion = await oai.chat.completions.create(
        model=model,
        messages=user("Weather in Paris for 3 days? [[fake tool=get_weather tokens=0]]"),  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}  # type: ignore[union-attr]


async def test_tools_streamed(oai: openai.AsyncOpenAI, model: str) -> None:
    stream = await oai.chat.completions.create(
        model=model,
        messages=user("Weather in Paris for 3 days? [[fake tool=get_weather tokens=2]]"),  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    chunks = await collect(stream)
    fragments = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(fragments) >= 3  # the first with id/name, then argument pieces
    first, rest = fragments[0], fragments[1:]
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function is not None and first.function.name == "get_weather"
    for frag in rest:  # id, type and name only in the first fragment
        assert frag.index == 0 and frag.id is None and frag.type is None
        assert frag.function is not None and frag.function.name is None
    arguments = "".join((f.function.arguments or "") for f in fragments if f.function)
    assert json.loads(arguments) == TOOL_INPUT
    assert len([f for f in rest if f.function and f.function.arguments]) >= 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == words(2)


async def test_tools_stream_helper(oai: openai.AsyncOpenAI, model: str) -> None:
    async with oai.chat.completions.stream(
        model=model,
        messages=user("Weather? [[fake tool=get_weather thinking=2 tokens=2]]"),  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        first_ids = [
            tc.id
            async for ev in stream
            if ev.type == "chunk" and ev.chunk.choices
            for tc in (ev.chunk.choices[0].delta.tool_calls or [])
            if tc.id
        ]
        final = await stream.get_final_completion()
    (choice,) = final.choices
    assert choice.finish_reason == "tool_calls"
    # The helper concatenates repeated strings: role, id and name must each come once.
    assert choice.message.role == "assistant"
    (call,) = choice.message.tool_calls or []
    assert [call.id] == first_ids
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_INPUT
    assert choice.message.content == words(2)
    assert reasoning_of(choice.message) == words(2, THINK_WORDS)


async def test_tool_round_trip(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str) -> None:
    question = {"role": "user", "content": "Weather in Paris? [[fake tool=get_weather tokens=0]]"}
    first = await oai.chat.completions.create(
        model=model,
        messages=[question],  # type: ignore[list-item]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    (call,) = first.choices[0].message.tool_calls or []
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},  # type: ignore[union-attr]
            }
        ],
    }
    second = await oai.chat.completions.create(
        model=model,
        messages=[
            question,
            assistant,
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"},
        ],  # type: ignore[list-item]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    (choice,) = second.choices
    assert choice.finish_reason == "stop"
    assert choice.message.content == words(8)
    assert not choice.message.tool_calls
    body = await upstream.body(model)
    assert second.usage is not None
    assert second.usage.prompt_tokens == count_input_tokens(body, UPSTREAM_FORMAT[model])  # type: ignore[arg-type]
    if UPSTREAM_FORMAT[model] == "anthropic":
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["user", "assistant", "user"]
        (tool_use,) = [b for b in body["messages"][1]["content"] if b["type"] == "tool_use"]
        assert tool_use["id"] == call.id and tool_use["name"] == "get_weather"
        assert tool_use["input"] == TOOL_INPUT
        (result,) = body["messages"][2]["content"]
        assert result["type"] == "tool_result" and result["tool_use_id"] == call.id
        assert result["content"] in ("sunny, 21 degrees", [{"type": "text", "text": "sunny, 21 degrees"}])
    else:
        assert body["messages"][2] == {
            "role": "tool",
            "tool_call_id": call.id,
            "content": "sunny, 21 degrees",
        }
        assert body["messages"][1]["tool_calls"][0]["id"] == call.id


async def test_thinking(oai: openai.AsyncOpenAI, model: str) -> None:
    completion = await oai.chat.completions.create(
        model=model,
        messages=user("Think first [[fake thinking=5 tokens=3]]"),  # type: ignore[arg-type]
    )
    message = completion.choices[0].message
    assert reasoning_of(message) == words(5, THINK_WORDS)
    assert message.model_extra is not None and message.model_extra["reasoning_content"] == words(
        5, THINK_WORDS
    )
    assert message.content == words(3)
    assert completion.usage is not None and completion.usage.completion_tokens == 5 + 3

    stream = await oai.chat.completions.create(
        model=model,
        messages=user("Think first [[fake thinking=5 tokens=3]]"),  # type: ignore[arg-type]
        stream=True,
    )
    chunks = await collect(stream)
    kinds = []
    for c in chunks:
        delta = c.choices[0].delta
        if reasoning_of(delta):
            kinds.append("reasoning")
        if delta.content:
            kinds.append("content")
    assert kinds == ["reasoning"] * 5 + ["content"] * 3  # thinking first, one token per delta
    assert "".join(reasoning_of(c.choices[0].delta) or "" for c in chunks) == words(5, THINK_WORDS)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_finish_length(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str, field: str) -> None:
    completion = await oai.chat.completions.create(
        model=model,
        messages=user("Go on"),  # type: ignore[arg-type]
        **{field: 3},  # type: ignore[arg-type]
    )
    (choice,) = completion.choices
    assert choice.finish_reason == "length"
    assert choice.message.content == words(3)
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    body = await upstream.body(model)
    if UPSTREAM_FORMAT[model] == "anthropic":
        assert body["max_tokens"] == 3
    else:
        assert body[field] == 3

    stream = await oai.chat.completions.create(
        model=model,
        messages=user("Go on"),  # type: ignore[arg-type]
        stream=True,
        **{field: 3},  # type: ignore[arg-type]
    )
    chunks = await collect(stream)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]


async def test_stop(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str) -> None:
    completion = await oai.chat.completions.create(model=model, messages=user("Go on"), stop="sit")  # type: ignore[arg-type]
    (choice,) = completion.choices
    assert choice.message.content == words(3)  # stops before "sit"
    assert choice.finish_reason == "stop"
    body = await upstream.body(model)
    if UPSTREAM_FORMAT[model] == "anthropic":
        assert body["stop_sequences"] == ["sit"]
    else:
        assert body["stop"] == "sit"


async def test_image_data_url(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str) -> None:
    url = f"data:image/png;base64,{PNG_B64}"
    completion = await oai.chat.completions.create(
        model=model,
        messages=[  # type: ignore[list-item]
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == words(8)
    body = await upstream.body(model)
    content = body["messages"][-1]["content"]
    if UPSTREAM_FORMAT[model] == "anthropic":
        assert {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
        } in content
        assert {"type": "text", "text": "What is in this picture?"} in content
    else:
        assert content[1] == {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 5 + 50  # five words and one image
    assert completion.usage.prompt_tokens == count_input_tokens(body, UPSTREAM_FORMAT[model])  # type: ignore[arg-type]


def system_texts(system: Any) -> list[str]:
    if isinstance(system, str):
        return [system]
    return [block["text"] for block in system]


async def test_system_and_developer(oai: openai.AsyncOpenAI, upstream: UpstreamLog, model: str) -> None:
    completion = await oai.chat.completions.create(
        model=model,
        messages=[  # type: ignore[list-item]
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Never lie."}]},
            {"role": "user", "content": "Hi"},
        ],
    )
    assert completion.choices[0].message.content == words(8)
    body = await upstream.body(model)
    if UPSTREAM_FORMAT[model] == "anthropic":
        joined = "\n\n".join(system_texts(body["system"]))
        assert "You are terse." in joined and "Never lie." in joined
        assert joined.index("You are terse.") < joined.index("Never lie.")
        assert [m["role"] for m in body["messages"]] == ["user"]
    else:
        assert [m["role"] for m in body["messages"]] == ["system", "developer", "user"]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == count_input_tokens(body, UPSTREAM_FORMAT[model]) == 3 + 2 + 1  # type: ignore[arg-type]


async def test_alias_create(oai: openai.AsyncOpenAI, upstream: UpstreamLog) -> None:
    completion = await oai.chat.completions.create(model="claude-test-alias", messages=user("Hi"))  # type: ignore[arg-type]
    assert completion.choices[0].message.content == words(8)
    assert (await upstream.last())["body"]["model"] == "fake-claude"


async def test_passthrough_forwards_body(oai: openai.AsyncOpenAI, upstream: UpstreamLog) -> None:
    """Same format upstream: the body goes on as sent, only the model name changed."""
    sent: dict[str, Any] = {
        "model": "gpt-test",
        "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi there"}],
        "max_completion_tokens": 64,
        "temperature": 1.5,
        "seed": 7,
        "logprobs": False,
    }
    extra = {"some_future_field": {"x": [1, 2]}, "top_k": 20}
    await oai.chat.completions.create(**sent, extra_body=extra)
    assert await upstream.body("gpt-test") == {**sent, **extra, "model": "fake-gpt"}


async def test_request_mapping_to_anthropic_upstream(oai: openai.AsyncOpenAI, upstream: UpstreamLog) -> None:
    """OpenAI fields → their Anthropic counterparts at an Anthropic upstream (wire.md §D.1 and the README)."""
    await oai.chat.completions.create(
        model="claude-test",
        messages=user("hi"),  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=1.7,
        user="user-7",
        seed=3,
    )
    body = await upstream.body("claude-test")
    assert body["max_tokens"] == 4096  # no limit given: the model's max_tokens_default
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    (tool,) = body["tools"]
    assert tool["name"] == "get_weather"
    assert tool["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    assert body["metadata"] == {"user_id": "user-7"}
    assert "seed" not in body and "user" not in body and "parallel_tool_calls" not in body

    await oai.chat.completions.create(
        model="claude-test",
        messages=user("hi"),  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_completion_tokens=500,
        max_tokens=9,
    )
    body = await upstream.body("claude-test")
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["max_tokens"] == 500  # max_completion_tokens wins over max_tokens


# --- models ----------------------------------------------------------------------------------


async def test_models_list_and_retrieve(oai: openai.AsyncOpenAI, gateway: Gateway) -> None:
    configured: list[dict[str, Any]] = yaml.safe_load(gateway.config_path.read_text())["models"]
    ids = [m["id"] for m in configured]
    page = await oai.models.list()
    models = [m async for m in page]
    assert [m.id for m in models] == ids
    for m in models:
        assert m.object == "model" and isinstance(m.created, int) and m.created > 0
        assert isinstance(m.owned_by, str) and m.owned_by
    one = await oai.models.retrieve("gpt-test")
    assert one.id == "gpt-test" and one.object == "model"
    alias = await oai.models.retrieve("claude-test-alias")
    assert alias.id == "claude-test"
    with pytest.raises(openai.NotFoundError) as info:
        await oai.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"
