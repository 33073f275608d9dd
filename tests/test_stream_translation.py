"""Stream translation, checked with the official SDKs' own stream parsers and accumulators.

Recorded upstream streams (``fixtures/sse``) are decoded, translated and served from an
in-process HTTP server to ``anthropic.AsyncAnthropic().messages.stream()`` and
``openai.AsyncOpenAI().chat.completions.stream()``; the assertions are on what those
SDKs assemble. Byte-level rules (role only first, usage chunk last, gapless indexes, …)
are checked on the produced bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import orjson
import pytest

from claudestore.protocol.sse import SSEDecoder
from claudestore.translate.anthropic.response import is_gateway_signature
from claudestore.translate.anthropic.stream import AnthropicStreamEncoder
from tests.support.sse import (
    ANTHROPIC,
    MESSAGES,
    OPENAI,
    anthropic_final,
    check_grammar,
    events_of,
    frames_of,
    load,
    openai_final,
    to_anthropic,
    to_openai,
    translate,
    wire_frames,
)

OPENAI_EXPECTED: dict[str, Any] = {
    "openai_text.sse": (
        [{"type": "text", "text": 'Hello! "Quoted", été — ünïcödé How can I help?\n'}],
        "end_turn",
        (100, 15, 0, 1024),
    ),
    "openai_tool_calls.sse": (
        [
            {
                "type": "tool_use",
                "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "fahrenheit"},
            },
            {
                "type": "tool_use",
                "id": "call_ABpHtCaWs6JOtRKz3YpqTX2v",
                "name": "get_weather",
                "input": {"location": "Paris"},
            },
        ],
        "tool_use",
        (82, 51, 0, 0),
    ),
    "openai_tool_interleaved.sse": (
        [
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "call_a1", "name": "get_weather", "input": {"location": "Oslo"}},
            {"type": "tool_use", "id": "call_b2", "name": "get_time", "input": {"tz": "Europe/Oslo"}},
        ],
        "tool_use",
        (120, 40, 0, 0),
    ),
    "openai_reasoning.sse": (
        [
            {"type": "thinking", "thinking": "Okay, 27 * 453. That is 12231."},
            {"type": "text", "text": "27 * 453 = 12,231"},
        ],
        "end_turn",
        (13, 150, 0, 0),
    ),
    "openai_no_done.sse": ([{"type": "text", "text": "Hi there."}], "max_tokens", (0, 0, 0, 0)),
}


@pytest.mark.parametrize("name", sorted(OPENAI_EXPECTED))
async def test_openai_upstream_to_anthropic_sdk(serve: Callable[[bytes], str], name: str) -> None:
    blocks, stop, (inp, out, cw, cr) = OPENAI_EXPECTED[name]
    msg = await anthropic_final(serve(to_anthropic(name, ka=True)))
    got = [b.to_dict() for b in msg.content]
    for block in got:
        block.pop("citations", None)
        if block["type"] == "thinking":
            assert is_gateway_signature(block.pop("signature"))
    assert got == blocks
    assert msg.stop_reason == stop and msg.model == "claude-pub" and msg.id.startswith("msg_")
    u = msg.usage
    assert (u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens) == (
        inp,
        out,
        cw,
        cr,
    )


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        (
            "openai_error.sse",
            "api_error",
            "The server had an error while processing your request. Sorry about that!",
        ),
        ("openai_truncated.sse", "api_error", "upstream closed the stream unexpectedly"),
    ],
)
async def test_openai_upstream_error_reaches_anthropic_sdk(
    serve: Callable[[bytes], str], name: str, kind: str, message: str
) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        await anthropic_final(serve(to_anthropic(name)))
    assert info.value.type == kind and info.value.api_message == message
    assert info.value.status_code == 200


ANTHROPIC_EXPECTED: dict[str, Any] = {
    "anthropic_text.sse": ('Hello! "Quoted", été — ünïcödé How can I help?\n', [], "stop", (25, 15, 0), None),
    "anthropic_tool_use.sse": (
        "Okay, let me check the weather in both cities.",
        [
            (
                "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "get_weather",
                {"location": "San Francisco, CA", "unit": "fahrenheit"},
            ),
            ("toolu_01HdVt2Rc8CSGBCR5W7sDLkT", "get_weather", {"location": "Paris"}),
        ],
        "tool_calls",
        (472, 89, 0),
        None,
    ),
    "anthropic_thinking.sse": (
        "27 * 453 = 12,231",
        [],
        "stop",
        (12 + 1024 + 2048, 57, 2048),
        "The user asks for 27 * 453.\n27 * 453 = 12231.",
    ),
    "anthropic_citations.sse": (
        "According to the document, the grass is green.",
        [],
        "stop",
        (610, 28, 0),
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(ANTHROPIC_EXPECTED))
async def test_anthropic_upstream_to_openai_sdk(serve: Callable[[bytes], str], name: str) -> None:
    text, tools, finish, (prompt, completion, cached), reasoning = ANTHROPIC_EXPECTED[name]
    completion_obj = await openai_final(serve(to_openai(name, ka=True)))
    choice = completion_obj.choices[0]
    assert choice.message.content == text and choice.finish_reason == finish
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == tools
    assert getattr(choice.message, "reasoning_content", None) == reasoning
    u = completion_obj.usage
    assert (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens) == (
        prompt,
        completion,
        cached,
    )
    assert u.total_tokens == prompt + completion and completion_obj.model == "gpt-pub"


async def test_anthropic_upstream_error_reaches_openai_sdk(serve: Callable[[bytes], str]) -> None:
    client = openai.AsyncOpenAI(
        api_key="k", base_url=serve(to_openai("anthropic_error.sse")) + "/v1", max_retries=0
    )
    seen = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in await client.chat.completions.create(model="m", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "Once upon"]
    assert info.value.message == "Overloaded" and info.value.type == "server_error"
    assert info.value.code == "overloaded"


@pytest.mark.parametrize(
    "name",
    ["anthropic_text.sse", "anthropic_tool_use.sse", "anthropic_thinking.sse", "anthropic_citations.sse"],
)
async def test_anthropic_round_trip_matches_upstream(serve: Callable[[bytes], str], name: str) -> None:
    """Decode + re-encode is faithful: the SDK assembles the same message as from the upstream bytes."""
    model = "claude-sonnet-4-5-20250929"
    direct = await anthropic_final(serve(load(name)))
    again = await anthropic_final(serve(translate(name, AnthropicStreamEncoder(model))))
    assert [b.to_dict() for b in again.content] == [b.to_dict() for b in direct.content]
    assert (again.id, again.model, again.stop_reason) == (direct.id, direct.model, direct.stop_reason)
    keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    assert {k: getattr(again.usage, k) for k in keys} == {k: getattr(direct.usage, k) for k in keys}


@pytest.mark.parametrize("name", ["openai_text.sse", "openai_tool_calls.sse", "openai_reasoning.sse"])
async def test_openai_round_trip_matches_upstream(serve: Callable[[bytes], str], name: str) -> None:
    direct = await openai_final(serve(load(name)))
    again = await openai_final(serve(to_openai(name)))
    a, b = again.choices[0], direct.choices[0]
    assert (a.message.content or "") == (b.message.content or "") and a.finish_reason == b.finish_reason
    assert [c.to_dict() for c in a.message.tool_calls or []] == [
        c.to_dict() for c in b.message.tool_calls or []
    ]
    assert getattr(a.message, "reasoning_content", None) == (
        getattr(b.message, "reasoning_content", None) or None
    )
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert getattr(again.usage, k) == getattr(direct.usage, k)


# -- wire rules on the produced bytes --------------------------------------------------------------------


@pytest.mark.parametrize("name", OPENAI)
def test_anthropic_output_frames(name: str) -> None:
    """Every frame has an event name equal to its data's type; indexes are gapless; usage is complete."""
    frames = wire_frames(to_anthropic(name))
    for event, data in frames:
        assert event is not None and data["type"] == event
    starts = [d["index"] for e, d in frames if e == "content_block_start"]
    assert starts == list(range(len(starts)))
    check_grammar(events_of(name))
    if frames[-1][0] == "error":
        return
    assert [e for e, _ in frames[:1] + frames[-2:]] == ["message_start", "message_delta", "message_stop"]
    usage_keys = {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
    assert set(frames[0][1]["message"]["usage"]) == usage_keys == set(frames[-2][1]["usage"])


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("name", ANTHROPIC)
def test_openai_output_chunks(name: str, include_usage: bool) -> None:
    raw = to_openai(name, include_usage=include_usage)
    assert b"event:" not in raw and b"\nid:" not in raw and not raw.startswith(b"id:")
    frames = frames_of(raw)
    assert all(f.raw.startswith(b"data: ") for f in frames)
    chunks = [orjson.loads(f.data) for f in frames if f.data != b"[DONE]"]
    if "error" in chunks[-1]:
        assert chunks[-1]["error"]["param"] is None and frames[-1].data != b"[DONE]"
        chunks.pop()
    else:
        assert frames[-1].data == b"[DONE]"
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert all("role" not in d for d in deltas[1:])
    seen_tools: set[int] = set()
    for d in deltas:
        for call in d.get("tool_calls", []):
            first = call["index"] not in seen_tools
            seen_tools.add(call["index"])
            assert ("id" in call) == first and ("name" in call["function"]) == first
            assert first or call["function"]["arguments"]
    assert seen_tools == set(range(len(seen_tools)))
    for c in chunks[:-1] if include_usage else chunks:
        assert c.get("usage", "absent") == (None if include_usage else "absent")
        assert c["choices"][0]["logprobs"] is None
    if include_usage and frames[-1].data == b"[DONE]":
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("name", ANTHROPIC + OPENAI)
def test_split_reads_and_crlf_give_the_same_frames(name: str) -> None:
    data = load(name)
    whole = [f.raw for f in frames_of(data)]
    for cut in range(1, len(data)):
        dec = SSEDecoder()
        assert [f.raw for f in dec.feed(data[:cut]) + dec.feed(data[cut:]) + dec.flush()] == whole
    crlf = data.replace(b"\n", b"\r\n")
    assert [f.raw for f in frames_of(crlf)] == whole
    assert [f.raw for f in frames_of(crlf, step=1)] == whole


@pytest.mark.parametrize("name", ANTHROPIC + OPENAI)
def test_translation_is_independent_of_read_boundaries(name: str) -> None:
    out = to_openai if name.startswith("anthropic") else to_anthropic
    expected = out(name)
    assert out(name, step=1) == expected
    assert out(name, data=load(name).replace(b"\n", b"\r\n"), step=7) == expected
