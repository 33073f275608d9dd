"""End to end: the official Anthropic SDK against ``POST /v1/messages`` of a real gateway.

Every test that takes ``model`` runs for ``claude-test`` (an Anthropic upstream: pass-through)
and ``gpt-test`` (an OpenAI-format upstream: translated), on both database backends. The
fake upstream is deterministic (``src/claudestore/fake_upstream/README.md``): what the client
sees is checked against what the fake actually received (``await upstream.last()``,
read right after the call, since every test shares one fake).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import anthropic
import pytest
import yaml

from claudestore.fake_upstream.script import THINK_WORDS, TOOL_INPUT, WORDS, count_input_tokens
from tests.support.servers import Gateway
from tests.support.upstream_log import (
    UPSTREAM_FORMAT,
    UPSTREAM_MODEL,
    UpstreamLog,
    collect,
    user,
    words,
)

MODELS = ["claude-test", "gpt-test"]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather forecast for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def check_event_sequence(events: list[Any]) -> None:
    """The Anthropic stream grammar, as the SDK's accumulator needs it (wire.md §A.6)."""
    types = [ev.type for ev in events]
    assert types[0] == "message_start", types
    assert types[-1] == "message_stop", types
    assert types[-2] == "message_delta", types
    assert types.count("message_start") == 1 and types.count("message_delta") == 1
    start = events[0].message
    assert start.content == [] and start.stop_reason is None and start.role == "assistant"
    assert start.usage is not None
    assert isinstance(start.usage.input_tokens, int) and isinstance(start.usage.output_tokens, int)
    open_index: int | None = None
    next_index = 0
    last_delta: Any = None
    for ev in events[1:-2]:
        if ev.type == "content_block_start":
            assert open_index is None, f"block {ev.index} started while {open_index} is open"
            assert ev.index == next_index, f"index {ev.index}, expected {next_index}"
            open_index, next_index, last_delta = ev.index, next_index + 1, None
            kind = ev.content_block.type
        elif ev.type == "content_block_delta":
            assert ev.index == open_index
            last_delta = ev.delta
        elif ev.type == "content_block_stop":
            assert ev.index == open_index
            if kind == "thinking":
                assert last_delta is not None and last_delta.type == "signature_delta"
                assert last_delta.signature
            open_index = None
        else:
            assert ev.type == "ping", ev.type
    assert open_index is None
    delta = events[-2]
    assert delta.delta.stop_reason is not None
    assert delta.usage is not None and isinstance(delta.usage.output_tokens, int)


# --- generation ------------------------------------------------------------------------------


async def test_create_text(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str) -> None:
    message = await claude.messages.create(model=model, max_tokens=100, messages=user("Hello, Claude"))
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == model
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == words(8)  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == await upstream.input_tokens(model)
    assert message.usage.output_tokens == 8
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    assert message._request_id is not None and message._request_id.startswith("req_")


async def test_create_with_system_and_tools_usage(
    claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str
) -> None:
    message = await claude.messages.create(
        model=model,
        max_tokens=100,
        system="You are terse and helpful.",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "first question here"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": "and the second [[fake tokens=5]]"}]},
        ],
    )
    expected = await upstream.input_tokens(model)
    assert expected > 10  # the system prompt, both turns and the tool definition were counted
    assert message.usage.input_tokens == expected
    assert message.usage.output_tokens == 5
    assert message.content[0].text == words(5)  # type: ignore[union-attr]


async def test_stream_raw_text_sequence(
    claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str
) -> None:
    stream = await claude.messages.create(
        model=model, max_tokens=100, stream=True, messages=user("Hi [[fake tokens=3]]")
    )
    events = await collect(stream)
    assert [ev.type for ev in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    check_event_sequence(events)
    start = events[0].message
    assert start.model == model and start.id.startswith("msg_")
    assert start.usage.output_tokens <= 1
    assert [ev.delta.text for ev in events[2:5]] == ["lorem", " ipsum", " dolor"]
    assert {ev.index for ev in events[1:6]} == {0}
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 3
    expected = await upstream.input_tokens(model)
    assert (events[-2].usage.input_tokens or start.usage.input_tokens) == expected


async def test_stream_raw_events(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str) -> None:
    stream = await claude.messages.create(
        model=model,
        max_tokens=100,
        stream=True,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=user("Plan my trip [[fake thinking=2 tokens=3 tool=get_weather]]"),
    )
    assert stream.response.headers["request-id"].startswith("req_")
    events = await collect(stream)
    check_event_sequence(events)
    blocks = [ev.content_block for ev in events if ev.type == "content_block_start"]
    assert [b.type for b in blocks] == ["thinking", "text", "tool_use"]
    assert blocks[2].name == "get_weather" and blocks[2].id
    deltas = [ev.delta for ev in events if ev.type == "content_block_delta"]
    assert "".join(d.thinking for d in deltas if d.type == "thinking_delta") == words(2, THINK_WORDS)
    assert "".join(d.text for d in deltas if d.type == "text_delta") == words(3)
    partial = [d.partial_json for d in deltas if d.type == "input_json_delta"]
    assert len([p for p in partial if p]) >= 2  # streamed in pieces, not as one blob
    assert json.loads("".join(partial)) == TOOL_INPUT
    assert events[0].message.model == model
    end = events[-2]
    assert end.delta.stop_reason == "tool_use"
    assert end.usage.output_tokens == 2 + 3 + 10
    # message_delta may repeat the input count (the SDK then overwrites message_start's).
    final_input = end.usage.input_tokens
    if final_input is None:
        final_input = events[0].message.usage.input_tokens
    assert final_input == await upstream.input_tokens(model)


async def test_stream_helper_text(
    claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str
) -> None:
    async with claude.messages.stream(
        model=model, max_tokens=100, messages=user("Count for me [[fake tokens=6]]")
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == [WORDS[0], *[" " + WORDS[k] for k in range(1, 6)]]  # one delta per token
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == words(6)  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.model == model
    assert final.usage.output_tokens == 6
    assert final.usage.input_tokens == await upstream.input_tokens(model)


async def test_tool_use_non_stream(claude: anthropic.AsyncAnthropic, model: str) -> None:
    message = await claude.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=user("Weather in Paris for 3 days? [[fake tool=get_weather tokens=0]]"),
    )
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["tool_use"]
    call = message.content[0]
    assert call.name == "get_weather" and call.id  # type: ignore[union-attr]
    assert call.input == TOOL_INPUT  # type: ignore[union-attr]


async def test_tool_use_streamed_arguments(claude: anthropic.AsyncAnthropic, model: str) -> None:
    async with claude.messages.stream(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=user("Weather in Paris for 3 days? [[fake tool=get_weather tokens=2]]"),
    ) as stream:
        fragments = [ev.partial_json async for ev in stream if ev.type == "input_json"]
        final = await stream.get_final_message()
    assert len([f for f in fragments if f]) >= 2
    assert json.loads("".join(fragments)) == TOOL_INPUT
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.name == "get_weather" and tool.id  # type: ignore[union-attr]
    assert tool.input == {"city": "Paris", "days": 3}  # type: ignore[union-attr]


async def test_tool_round_trip(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str) -> None:
    question = {"role": "user", "content": "Weather in Paris? [[fake tool=get_weather tokens=0]]"}
    first = await claude.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[question],  # type: ignore[list-item]
    )
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use"
    second = await claude.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},  # type: ignore[misc]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 degrees"},
                    {"type": "text", "text": "Thanks! [[fake tokens=4]]"},
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"]
    assert second.content[0].text == words(4)  # type: ignore[union-attr]
    body = await upstream.body(model)
    assert second.usage.input_tokens == count_input_tokens(body, UPSTREAM_FORMAT[model])  # type: ignore[arg-type]
    if UPSTREAM_FORMAT[model] == "anthropic":
        assistant, result = body["messages"][1], body["messages"][2]
        assert assistant["content"][-1]["id"] == call.id
        assert assistant["content"][-1]["input"] == TOOL_INPUT
        assert result["content"][0] == {
            "type": "tool_result",
            "tool_use_id": call.id,
            "content": "sunny, 21 degrees",
        }
    else:
        assistant = body["messages"][1]
        assert assistant["role"] == "assistant"
        (tool_call,) = assistant["tool_calls"]
        assert tool_call["id"] == call.id and tool_call["function"]["name"] == "get_weather"
        assert json.loads(tool_call["function"]["arguments"]) == TOOL_INPUT
        tool_msg = body["messages"][2]
        assert tool_msg == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"}
        assert body["messages"][3]["role"] == "user"
        assert "Thanks!" in json.dumps(body["messages"][3]["content"])


async def test_thinking_non_stream(
    claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str
) -> None:
    message = await claude.messages.create(
        model=model,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("Think first [[fake thinking=5]]"),
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.thinking == words(5, THINK_WORDS)  # type: ignore[union-attr]
    assert isinstance(thinking.signature, str) and thinking.signature  # type: ignore[union-attr]
    assert message.content[1].text == words(8)  # type: ignore[union-attr]
    assert message.usage.output_tokens == 5 + 8
    # The client echoes the thinking block back, as it must with tools; the gateway accepts it.
    again = await claude.messages.create(
        model=model,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            *user("Think first"),
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},  # type: ignore[misc]
            *user("And now? [[fake tokens=2]]"),
        ],
    )
    assert again.content[-1].text == words(2)  # type: ignore[union-attr]
    body = await upstream.body(model)
    if UPSTREAM_FORMAT[model] == "openai":  # a gateway-minted signature never goes upstream
        assert "csgw1." not in json.dumps(body)


async def test_thinking_stream(claude: anthropic.AsyncAnthropic, model: str) -> None:
    stream = await claude.messages.create(
        model=model,
        max_tokens=2000,
        stream=True,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("Think first [[fake thinking=5 tokens=2]]"),
    )
    events = await collect(stream)
    check_event_sequence(events)
    starts = [ev.content_block.type for ev in events if ev.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    signatures = [
        ev.delta.signature
        for ev in events
        if ev.type == "content_block_delta" and ev.delta.type == "signature_delta"
    ]
    assert len(signatures) == 1 and signatures[0]

    async with claude.messages.stream(
        model=model,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("Think first [[fake thinking=5 tokens=2]]"),
    ) as helper:
        final = await helper.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == words(5, THINK_WORDS)  # type: ignore[union-attr]
    assert final.content[0].signature  # type: ignore[union-attr]
    assert final.content[1].text == words(2)  # type: ignore[union-attr]


async def test_max_tokens_stop(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str) -> None:
    message = await claude.messages.create(model=model, max_tokens=3, messages=user("Go on"))
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.content[0].text == words(3)  # type: ignore[union-attr]
    assert message.usage.output_tokens == 3
    body = await upstream.body(model)
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 3

    async with claude.messages.stream(model=model, max_tokens=3, messages=user("Go on")) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.content[0].text == words(3)  # type: ignore[union-attr]
    assert final.usage.output_tokens == 3


async def test_stop_sequence(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str) -> None:
    message = await claude.messages.create(
        model=model, max_tokens=100, stop_sequences=["sit"], messages=user("Go on")
    )
    assert message.content[0].text == words(3)  # type: ignore[union-attr]  # stops before "sit"
    body = await upstream.body(model)
    if UPSTREAM_FORMAT[model] == "anthropic":
        assert body["stop_sequences"] == ["sit"]
        assert message.stop_reason == "stop_sequence" and message.stop_sequence == "sit"
    else:  # OpenAI never says which stop string fired (wire.md §D.2)
        assert body["stop"] in (["sit"], "sit")
        assert message.stop_reason == "end_turn" and message.stop_sequence is None

    async with claude.messages.stream(
        model=model, max_tokens=100, stop_sequences=["sit"], messages=user("Go on")
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == words(3)  # type: ignore[union-attr]
    assert final.stop_reason == message.stop_reason and final.stop_sequence == message.stop_sequence


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_usage_matches_upstream(
    claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str, stream: bool
) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 100,
        "system": "Answer in one short sentence please.",
        "messages": user("How many words are in this question? [[fake tokens=4 thinking=3]]"),
    }
    if stream:
        async with claude.messages.stream(**kwargs) as s:
            message = await s.get_final_message()
    else:
        message = await claude.messages.create(**kwargs)
    assert message.usage.input_tokens == await upstream.input_tokens(model)
    assert message.usage.output_tokens == 3 + 4
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_cache_tokens(
    claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str, stream: bool
) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 100,
        "messages": user("A long cached prompt [[fake cache_read=7 cache_write=3 tokens=2]]"),
    }
    if stream:
        async with claude.messages.stream(**kwargs) as s:
            message = await s.get_final_message()
    else:
        message = await claude.messages.create(**kwargs)
    assert message.usage.cache_read_input_tokens == 7
    assert message.usage.cache_creation_input_tokens == 3
    assert message.usage.input_tokens == await upstream.input_tokens(model)
    assert message.usage.output_tokens == 2


async def test_count_tokens(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog, model: str) -> None:
    count = await claude.messages.count_tokens(
        model=model,
        system="be brief",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "one two three four"},
            {"role": "assistant", "content": "five six"},
            {"role": "user", "content": "seven"},
        ],
    )
    last = await upstream.last()
    fmt = UPSTREAM_FORMAT[model]
    if fmt == "anthropic":
        assert last["path"] == "/v1/messages/count_tokens"
    else:  # a one-token completion on an OpenAI-compatible upstream
        assert last["path"] == "/v1/chat/completions"
        assert last["body"].get("max_tokens", last["body"].get("max_completion_tokens")) == 1
    assert last["body"]["model"] == UPSTREAM_MODEL[model]
    assert count.input_tokens == count_input_tokens(last["body"], fmt)  # type: ignore[arg-type]
    assert count.input_tokens == 2 + 4 + 2 + 1 + 10
    assert count._request_id is not None and count._request_id.startswith("req_")


async def test_alias_create(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog) -> None:
    message = await claude.messages.create(model="claude-test-alias", max_tokens=50, messages=user("Hi"))
    assert message.content[0].text == words(8)  # type: ignore[union-attr]
    assert message.model in ("claude-test-alias", "claude-test")
    assert (await upstream.last())["body"]["model"] == "fake-claude"


async def test_passthrough_forwards_body(claude: anthropic.AsyncAnthropic, upstream: UpstreamLog) -> None:
    """Same format upstream: the body goes on as sent, only the model name changed."""
    sent: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
        "metadata": {"user_id": "user-7"},
        "stop_sequences": ["zzz"],
    }
    extra = {"temperature": 0.2, "service_tier": "auto", "some_future_field": {"x": [1, 2]}}
    await claude.messages.create(**sent, extra_body=extra)
    assert await upstream.body("claude-test") == {**sent, **extra, "model": "fake-claude"}


async def test_request_mapping_to_openai_upstream(
    claude: anthropic.AsyncAnthropic, upstream: UpstreamLog
) -> None:
    """Anthropic fields → their OpenAI counterparts at an OpenAI-format upstream (wire.md §D.1)."""
    await claude.messages.create(
        model="gpt-test",
        max_tokens=50,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        metadata={"user_id": "user-7"},
        stop_sequences=["zzz"],
        extra_body={"temperature": 0.3, "top_p": 0.9},
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            }
        ],
    )
    body = await upstream.body("gpt-test")
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 50
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    (tool,) = body["tools"]
    assert tool["type"] == "function" and tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"] == WEATHER_TOOL["input_schema"]
    assert body["user"] == "user-7" and body["stop"] == ["zzz"]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert "cache_control" not in json.dumps(body)

    await claude.messages.create(
        model="gpt-test",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=user("hi"),
    )
    body = await upstream.body("gpt-test")
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["reasoning_effort"] == "low"  # budget < 4096


# --- models ----------------------------------------------------------------------------------


def configured_models(gateway: Gateway) -> list[dict[str, Any]]:
    """The model entries of the running gateway's config file, in order."""
    models: list[dict[str, Any]] = yaml.safe_load(gateway.config_path.read_text())["models"]
    return models


async def test_models_list_and_retrieve(claude: anthropic.AsyncAnthropic, gateway: Gateway) -> None:
    configured = configured_models(gateway)
    ids = [m["id"] for m in configured]
    assert {"claude-test", "gpt-test"} <= set(ids)
    page = claude.models.list()
    models = [m async for m in page]
    assert [m.id for m in models] == ids
    by_id = {m.id: m for m in models}
    for entry in configured:
        assert by_id[entry["id"]].display_name == entry.get("display_name", entry["id"])
    assert by_id["claude-test"].display_name == "Claude Test (fake upstream)"
    for m in models:
        assert m.type == "model"
        assert isinstance(m.created_at, datetime) and m.created_at.tzinfo is not None

    one = await claude.models.retrieve("claude-test")
    assert one.id == "claude-test" and one.display_name == "Claude Test (fake upstream)"
    assert one.created_at == by_id["claude-test"].created_at
    assert one._request_id is not None and one._request_id.startswith("req_")
    alias = await claude.models.retrieve("claude-test-alias")
    assert alias.id == "claude-test"

    # Anthropic paging: limit, has_more, after_id.
    first = await claude.models.list(limit=1)
    assert [m.id for m in first.data] == ids[:1] and first.has_more is True
    rest = await claude.models.list(limit=1000, after_id=ids[0])
    assert [m.id for m in rest.data] == ids[1:] and rest.has_more is False


async def test_models_retrieve_unknown(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        await claude.models.retrieve("no-such-model")
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
