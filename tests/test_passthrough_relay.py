"""Pass-through relays: bytes out as they came in (but for the model name), usage read on the way.

The relayed bytes are also fed to the official SDKs (``serve`` / ``*_final`` from the
translation tests) to check that what the client assembles is intact.
"""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import openai
import orjson
import pytest

from claudestore.core.response import Usage
from claudestore.core.stream import StreamError
from claudestore.protocol.anthropic.passthrough import AnthropicRelay
from claudestore.protocol.openai.passthrough import OpenAIRelay
from claudestore.protocol.sse import Frame
from tests.support.sse import (
    ANTHROPIC,
    OPENAI,
    anthropic_final,
    frames_of,
    load,
    openai_final,
)

UPSTREAM_A = "claude-sonnet-4-5-20250929"
UPSTREAM_O = "gpt-4o-2024-08-06"
Relay = AnthropicRelay | OpenAIRelay


def relay_bytes(relay: Relay, data: bytes, step: int | None = None) -> bytes:
    return b"".join(relay.feed(f) for f in frames_of(data, step))


# -- Anthropic ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ANTHROPIC)
def test_anthropic_relay_is_byte_identical_when_names_match(name: str) -> None:
    data = load(name)
    relay = AnthropicRelay(UPSTREAM_A, UPSTREAM_A)
    assert relay_bytes(relay, data) == data
    assert relay_bytes(AnthropicRelay(UPSTREAM_A, UPSTREAM_A), data.replace(b"\n", b"\r\n"), step=3) == data
    assert relay.saw_stop == (name != "anthropic_error.sse")
    assert relay.complete  # message_stop, or the upstream's own error event


def test_anthropic_relay_complete_needs_a_message_delta() -> None:
    frames = frames_of(load("anthropic_text.sse"))
    relay = AnthropicRelay("pub", "up")
    for f in frames[:-1]:
        assert not relay.complete
        relay.feed(f)
    assert relay.complete and not relay.saw_stop  # the SDKs accept a stream without message_stop


@pytest.mark.parametrize(
    ("name", "usage", "stop"),
    [
        ("anthropic_text.sse", Usage(25, 15, 0, 0), "end_turn"),
        ("anthropic_tool_use.sse", Usage(472, 89, 0, 0), "tool_use"),
        ("anthropic_thinking.sse", Usage(12, 57, 1024, 2048), "end_turn"),
        ("anthropic_citations.sse", Usage(610, 28, 0, 0), "end_turn"),
        ("anthropic_error.sse", Usage(25, 1, 0, 0), None),
    ],
)
def test_anthropic_relay_reads_usage_and_stop(name: str, usage: Usage, stop: str | None) -> None:
    relay = AnthropicRelay("claude-pub", UPSTREAM_A)
    relay_bytes(relay, load(name))
    assert relay.usage == usage and relay.stop_reason == stop
    if name == "anthropic_error.sse":
        assert relay.error == StreamError("overloaded_error", "Overloaded") and not relay.saw_stop
    else:
        assert relay.error is None and relay.saw_stop


@pytest.mark.parametrize(
    "upstream", [UPSTREAM_A, "claude-sonnet-4-5"]
)  # exact name, and an alias the upstream resolved
async def test_anthropic_relay_renames_the_model(serve: Callable[[bytes], str], upstream: str) -> None:
    data = load("anthropic_tool_use.sse")
    out = relay_bytes(AnthropicRelay("claude-pub", upstream), data)
    assert UPSTREAM_A.encode() not in out
    ins, outs = frames_of(data), frames_of(out)
    assert [f.raw for f in ins[1:]] == [f.raw for f in outs[1:]]  # only message_start changes
    start_in, start_out = orjson.loads(ins[0].data), orjson.loads(outs[0].data)
    start_in["message"]["model"] = "claude-pub"
    assert start_out == start_in and outs[0].event == "message_start"
    direct, relayed = await anthropic_final(serve(data)), await anthropic_final(serve(out))
    assert relayed.model == "claude-pub"
    assert relayed.to_dict() == {**direct.to_dict(), "model": "claude-pub"}


def test_anthropic_relay_reads_unusual_frame_shapes() -> None:
    """``data:`` before ``event:``, no space after the colon, spaced JSON: still found and parsed."""
    frames = [
        b'data: {"type": "message_start", "message": {"id": "m", "model": "up", "usage": {"input_tokens": 3}}}\n'
        b"event: message_start\n\n",
        b'event:message_delta\ndata:{"type":"message_delta","delta":{"stop_reason":"max_tokens"},'
        b'"usage":{"output_tokens":4}}\n\n',
        b": comment\n\n",
        b'\nevent: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    relay = AnthropicRelay("pub", "up")
    out = [relay.feed(Frame(f)) for f in frames]
    assert out[1:] == frames[1:]
    start = Frame(out[0])
    assert start.event == "message_start" and orjson.loads(start.data)["message"]["model"] == "pub"
    assert relay.usage == Usage(3, 4) and relay.stop_reason == "max_tokens" and relay.saw_stop


async def test_anthropic_relay_error_reaches_the_sdk(serve: Callable[[bytes], str]) -> None:
    relay = AnthropicRelay("claude-pub", UPSTREAM_A)
    with pytest.raises(anthropic.APIStatusError) as info:
        await anthropic_final(serve(relay_bytes(relay, load("anthropic_error.sse"))))
    assert info.value.type == "overloaded_error" and relay.error is not None


# -- OpenAI ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPENAI)
def test_openai_relay_is_byte_identical_when_names_match_and_usage_wanted(name: str) -> None:
    data = load(name)
    relay = OpenAIRelay("m", "m", client_wants_usage=True)
    assert relay_bytes(relay, data) == data
    assert (
        relay_bytes(OpenAIRelay("m", "m", client_wants_usage=True), data.replace(b"\n", b"\r\n"), step=5)
        == data
    )
    assert relay.saw_done == (b"[DONE]" in data)
    assert relay.complete == (name != "openai_truncated.sse")


@pytest.mark.parametrize(
    ("name", "usage", "finish"),
    [
        ("openai_text.sse", Usage(100, 15, 0, 1024, 0), "stop"),
        ("openai_tool_calls.sse", Usage(82, 51, 0, 0, 0), "tool_calls"),
        ("openai_tool_interleaved.sse", Usage(120, 40), "tool_calls"),
        ("openai_reasoning.sse", Usage(13, 150, 0, 0, 120), "stop"),
        ("openai_no_done.sse", Usage(), "length"),
        ("openai_error.sse", Usage(), None),
        ("openai_truncated.sse", Usage(), None),
    ],
)
def test_openai_relay_reads_usage_and_finish(name: str, usage: Usage, finish: str | None) -> None:
    relay = OpenAIRelay("pub", "gpt-4o", client_wants_usage=False)
    relay_bytes(relay, load(name))
    assert relay.usage == usage and relay.finish_reason == finish
    assert relay.stop_reason == {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}.get(
        finish
    )
    if name == "openai_error.sse":
        message = "The server had an error while processing your request. Sorry about that!"
        assert relay.error == StreamError("api_error", message)
    else:
        assert relay.error is None


async def test_openai_relay_drops_the_usage_chunk_the_client_did_not_ask_for(
    serve: Callable[[bytes], str],
) -> None:
    data = load("openai_text.sse")
    relay = OpenAIRelay("m", "m", client_wants_usage=False)
    out = relay_bytes(relay, data)
    dropped = [f.raw for f in frames_of(data) if b'"choices":[]' in f.raw]
    assert len(dropped) == 1 and out == data.replace(dropped[0], b"")
    assert relay.usage.output_tokens == 15 and relay.saw_done
    final = await openai_final(serve(out))
    assert final.usage is None and final.choices[0].message.content.endswith("How can I help?\n")
    # usage on a chunk that has choices (DeepSeek) stays: dropping it would drop the finish_reason
    assert relay_bytes(OpenAIRelay("m", "m", client_wants_usage=False), load("openai_reasoning.sse")) == load(
        "openai_reasoning.sse"
    )


async def test_openai_relay_renames_the_model_in_every_chunk(serve: Callable[[bytes], str]) -> None:
    data = load("openai_tool_calls.sse")
    relay = OpenAIRelay("my-gpt", "gpt-4o", client_wants_usage=True)  # the upstream answers with a dated name
    out = relay_bytes(relay, data)
    assert (
        out == data.replace(b'"model":"gpt-4o-2024-08-06"', b'"model":"my-gpt"') and b"2024-08-06" not in out
    )
    direct, relayed = await openai_final(serve(data)), await openai_final(serve(out))
    assert relayed.model == "my-gpt"
    assert relayed.to_dict() == {**direct.to_dict(), "model": "my-gpt"}


def test_openai_relay_rename_edge_cases() -> None:
    spaced = Frame(
        b'data: {"id": "c", "model": "up", "choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'
    )
    assert OpenAIRelay("pub", "up", client_wants_usage=True).feed(spaced) == spaced.raw.replace(
        b'"up"', b'"pub"'
    )
    relay = OpenAIRelay("pub", "up", client_wants_usage=True)
    azure = Frame(b'data: {"choices":[],"id":"","model":"","prompt_filter_results":[]}\n\n')
    real = Frame(
        b'data: {"id":"c","model":"up-2025","choices":[{"index":0,"delta":{"content":"\\"model\\":\\"up-2025\\""}}]}\n\n'
    )
    assert relay.feed(azure) == azure.raw and relay.feed(Frame(b": ping\n\n")) == b": ping\n\n"
    assert relay.feed(real) == real.raw.replace(b'"model":"up-2025"', b'"model":"pub"')
    assert b'\\"model\\":\\"up-2025\\"' in relay.feed(real)  # a quoted look-alike inside a string stays
    assert OpenAIRelay("same", "same", client_wants_usage=True).feed(real) == real.raw


def test_openai_relay_reads_errors_beside_other_fields_and_spaced_usage() -> None:
    relay = OpenAIRelay("m", "m", client_wants_usage=False)
    openrouter = Frame(
        b'data: {"id":"gen-1","model":"m","provider":"openai","error":{"code":"server_error","message":"Provider '
        b'disconnected"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n'
    )
    assert relay.feed(openrouter) == openrouter.raw
    assert relay.error == StreamError("api_error", "Provider disconnected") and relay.complete
    spaced = Frame(
        b'data: {"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}\n\n'
    )
    assert relay.feed(spaced) == b"" and relay.usage == Usage(7, 2)


async def test_openai_relay_error_reaches_the_sdk(serve: Callable[[bytes], str]) -> None:
    out = relay_bytes(OpenAIRelay("pub", "gpt-4o", client_wants_usage=False), load("openai_error.sse"))
    client = openai.AsyncOpenAI(api_key="k", base_url=serve(out) + "/v1", max_retries=0)
    with pytest.raises(openai.APIError) as info:
        async for _ in await client.chat.completions.create(model="m", messages=[], stream=True):
            pass
    assert info.value.type == "server_error"
