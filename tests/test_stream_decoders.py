"""The stream decoders' state machines and the encoders' exact frames, event by event."""

from __future__ import annotations

from typing import Any

import orjson

from claudestore.core.response import Usage
from claudestore.core.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StreamError,
    StreamEvent,
)
from claudestore.protocol.sse import Frame
from claudestore.translate.anthropic.stream import (
    AnthropicStreamDecoder,
    AnthropicStreamEncoder,
    merge_delta_usage,
)
from claudestore.translate.openai.stream import OpenAIStreamDecoder, OpenAIStreamEncoder
from tests.support.sse import check_grammar


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> Frame:
    body: dict[str, Any] = {"id": "chatcmpl-x1", "model": "m"}
    if delta is not None or finish is not None:
        body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    body.update(extra)
    return Frame(b"data: " + orjson.dumps(body) + b"\n\n")


DONE = Frame(b"data: [DONE]\n\n")


def run_openai(*frames: Frame, eof: bool = True) -> list[StreamEvent]:
    dec = OpenAIStreamDecoder()
    evs = [ev for f in frames for ev in dec.feed(f)]
    return evs + (dec.finish() if eof else [])


def test_openai_decoder_ignores_prompt_filter_frames_and_comments() -> None:
    evs = run_openai(
        Frame(b'data: {"choices":[],"created":0,"id":"","model":"","prompt_filter_results":[]}\n\n'),
        Frame(b": keep-alive\n\n"),
        chunk({"content": "a"}),
        chunk({}, "stop"),
    )
    check_grammar(evs)
    assert isinstance(evs[0], MessageStart) and evs[0].id == "msg_x1"


def test_openai_decoder_reasoning_aliases_refusal_and_done_without_finish() -> None:
    evs = run_openai(
        chunk({"reasoning": "r1"}),
        chunk({"reasoning_content": "r2", "reasoning": "r2"}),
        chunk({"refusal": "no"}),
        DONE,
    )
    check_grammar(evs)
    thinking = [e.text for e in evs if isinstance(e, BlockDelta) and e.kind == "thinking"]
    assert thinking == ["r1", "r2"]
    assert [e.stop_reason for e in evs if isinstance(e, MessageDelta)] == ["refusal"]


def test_openai_decoder_tools_edge_cases() -> None:
    evs = run_openai(
        chunk({"tool_calls": [{"index": 0, "function": {"name": "a", "arguments": '{"x":1}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "b", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " "}}]}),  # late: dropped
        chunk(
            {"tool_calls": [{"index": 2, "id": "c3", "function": {"name": "c", "arguments": "{}"}}]}
        ),  # buffered
        chunk({"content": "after"}),  # closes 1, flushes 2, then text
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "}"}}]}),  # late: dropped
        chunk({}, "tool_calls"),
    )
    check_grammar(evs)
    starts = [(e.kind, e.id, e.name) for e in evs if isinstance(e, BlockStart)]
    assert starts[1:] == [("tool_use", "c2", "b"), ("tool_use", "c3", "c"), ("text", None, None)]
    assert starts[0][1] is not None and starts[0][1].startswith("toolu_")
    args = [(e.index, e.text) for e in evs if isinstance(e, BlockDelta) and e.kind == "json"]
    assert args == [(0, '{"x":1}'), (1, "{"), (2, "{}")]


def test_openai_decoder_ends_on_usage_chunk_and_reports_usage() -> None:
    dec = OpenAIStreamDecoder()
    assert [type(e) for e in dec.feed(chunk({"content": "a"}))] == [MessageStart, BlockStart, BlockDelta]
    assert dec.feed(chunk({}, "length")) == []
    usage = {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}
    evs = dec.feed(chunk(None, choices=[], usage=usage))
    assert [type(e) for e in evs] == [BlockStop, MessageDelta, MessageStop]
    assert isinstance(evs[1], MessageDelta) and evs[1].stop_reason == "max_tokens"
    assert (dec.usage.input_tokens, dec.usage.cache_read_tokens, dec.usage.output_tokens) == (6, 4, 3)
    assert dec.feed(DONE) == [] and dec.finish() == []


def test_openai_decoder_errors() -> None:
    err = {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}
    evs = run_openai(chunk({"content": "a"}), chunk(None, error=err), chunk({"content": "b"}))
    assert evs[-1] == StreamError("rate_limit_error", "slow down") and len(evs) == 4
    assert run_openai(Frame(b"data: {nope\n\n"))[-1] == StreamError(
        "api_error", "The upstream sent a stream chunk that is not a JSON object."
    )
    assert run_openai() == [StreamError("api_error", "upstream closed the stream unexpectedly")]
    assert [type(e) for e in run_openai(DONE)] == [MessageStart, MessageDelta, MessageStop]


def test_anthropic_decoder_unknown_events_blocks_and_eof() -> None:
    raw_block = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    frames = [
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"x","usage":'
        b'{"input_tokens":5,"cache_read_input_tokens":7,"output_tokens":1}}}\n\n',
        b'event: foo_event\ndata: {"type":"foo_event"}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        + orjson.dumps(raw_block)
        + b"}\n\n",
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
        b'{"type":"input_json_delta","partial_json":"{\\"q\\": 1}"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":9,"input_tokens":6}}\n\n',
    ]
    dec = AnthropicStreamDecoder()
    evs = [ev for f in frames for ev in dec.feed(Frame(f))]
    assert [type(e) for e in evs] == [MessageStart, BlockStart, BlockDelta, BlockStop, MessageDelta]
    assert evs[1] == BlockStart(0, "other", raw=raw_block)
    assert (dec.usage.input_tokens, dec.usage.cache_read_tokens, dec.usage.output_tokens) == (6, 7, 9)
    assert dec.finish() == [MessageStop()] and dec.finish() == []
    enc = AnthropicStreamEncoder("x")
    assert b"".join(enc.encode(e) for e in evs[1:4]) == b"".join(frames[2:5])
    assert AnthropicStreamDecoder().finish() == [
        StreamError("api_error", "upstream closed the stream unexpectedly")
    ]


def test_merge_delta_usage_keeps_absent_fields() -> None:
    start = Usage(input_tokens=5, output_tokens=1, cache_write_tokens=2, cache_read_tokens=3)
    assert merge_delta_usage(start, {"output_tokens": 9}) == Usage(5, 9, 2, 3)
    assert merge_delta_usage(start, {"output_tokens": 9, "cache_read_input_tokens": 0}) == Usage(5, 9, 2, 0)
    assert merge_delta_usage(start, None) is start


def test_encoders_render_exact_frames() -> None:
    a = AnthropicStreamEncoder("c", message_id="msg_fixed")
    assert a.encode(MessageStart("msg_up", "up", Usage())).startswith(
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_fixed",'
    )
    assert a.encode(Ping()) == a.keepalive() == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert a.encode(StreamError("overloaded_error", "Overloaded")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert a.encode(BlockStart(3, "redacted_thinking", data="abc")) == (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":3,'
        b'"content_block":{"type":"redacted_thinking","data":"abc"}}\n\n'
    )
    o = OpenAIStreamEncoder("g", include_usage=False, completion_id="chatcmpl-1", created=5)
    assert o.keepalive() == b": ping\n\n"
    assert o.encode(BlockDelta(0, "signature", "s")) == o.encode(BlockStop(0)) == o.encode(Ping()) == b""
    assert o.encode(BlockDelta(0, "text", "hi")) == (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":5,"model":"g",'
        b'"choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]}\n\n'
    )
    assert o.encode(MessageStop()) == b"data: [DONE]\n\n"
