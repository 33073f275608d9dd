"""Anthropic SSE frames ⇄ canonical stream events (spec wire.md §A.6).

``AnthropicStreamDecoder`` reads an Anthropic upstream stream (used for Anthropic
upstream → OpenAI client). ``AnthropicStreamEncoder`` renders canonical events as the
exact frames the Anthropic SDKs parse (used for OpenAI upstream → Anthropic client); it
renders faithfully and relies on its producer (``OpenAIStreamDecoder``) for the grammar.

Hot path: one ``orjson.loads`` per decoded frame; the encoder writes the frequent
events (deltas) from byte templates instead of building and dumping dicts.
"""

from __future__ import annotations

from typing import Any

import orjson

from claudestore.core.response import StopReason, Usage
from claudestore.core.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    DeltaKind,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StreamError,
    StreamEvent,
)
from claudestore.protocol.anthropic.errors import stream_error_event
from claudestore.protocol.sse import Frame, encode_event
from claudestore.translate.mapping import anthropic_usage, anthropic_usage_wire

__all__ = ["AnthropicStreamDecoder", "AnthropicStreamEncoder", "merge_delta_usage"]

_DELTA_KINDS: dict[str, tuple[DeltaKind, str]] = {
    "text_delta": ("text", "text"),
    "input_json_delta": ("json", "partial_json"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
}


def merge_delta_usage(usage: Usage, wire: Any) -> Usage:
    """The cumulative usage after a ``message_delta`` usage object (a new ``Usage``).

    Mirrors the SDK accumulator: ``output_tokens`` always overwrites, the other counts
    overwrite only when present (an absent field keeps the ``message_start`` value).
    """
    if not isinstance(wire, dict):
        return usage
    new = anthropic_usage(wire)
    return Usage(
        new.input_tokens if "input_tokens" in wire else usage.input_tokens,
        new.output_tokens if "output_tokens" in wire else usage.output_tokens,
        new.cache_write_tokens if "cache_creation_input_tokens" in wire else usage.cache_write_tokens,
        new.cache_read_tokens if "cache_read_input_tokens" in wire else usage.cache_read_tokens,
        usage.reasoning_tokens,
    )


class AnthropicStreamDecoder:
    """Anthropic upstream frames → canonical events.

    Unknown event names and deltas are skipped; unknown block types become
    ``BlockStart(kind="other", raw=block)``. ``event: error`` (or a frame that is not
    JSON) becomes ``StreamError``. ``usage`` is the cumulative usage seen so far;
    ``stop_reason`` and ``error`` keep what the stream reported.
    """

    __slots__ = ("_phase", "error", "stop_reason", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.stop_reason: StopReason | None = None
        self.error: StreamError | None = None
        self._phase = 0  # 1: message_delta seen, 2: ended (message_stop or error)

    def finish(self) -> list[StreamEvent]:
        """The upstream's body ended (EOF). Idempotent.

        After a ``message_delta`` a missing ``message_stop`` is supplied (the SDKs tolerate
        its absence too); before one, the upstream died: ``StreamError``.
        """
        phase, self._phase = self._phase, 2
        if phase == 2:
            return []
        if phase == 1:
            return [MessageStop()]
        return [StreamError("api_error", "upstream closed the stream unexpectedly")]

    def feed(self, frame: Frame) -> list[StreamEvent]:
        data = frame.data
        if not data:
            return []  # comment / keep-alive
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            if data.startswith(b"[DONE]"):
                return []
            self._phase = 2
            self.error = StreamError("api_error", "The upstream sent a stream event that is not JSON.")
            return [self.error]
        if not isinstance(obj, dict):
            return []
        name = obj.get("type") or frame.event  # they are equal on the wire; "type" is at hand
        if name == "content_block_delta":
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            spec = _DELTA_KINDS.get(dtype)
            if spec is not None:
                return [BlockDelta(obj.get("index", 0), spec[0], delta.get(spec[1]) or "")]
            if dtype == "citations_delta":
                return [BlockDelta(obj.get("index", 0), "citation", citation=delta.get("citation"))]
            return []
        if name == "content_block_start":
            return [_block_start(obj.get("index", 0), obj.get("content_block") or {})]
        if name == "content_block_stop":
            return [BlockStop(obj.get("index", 0))]
        if name == "ping":
            return [Ping()]
        if name == "message_start":
            msg = obj.get("message") or {}
            self.usage = anthropic_usage(msg.get("usage"))
            return [MessageStart(msg.get("id") or "", msg.get("model") or "", self.usage)]
        if name == "message_delta":
            delta = obj.get("delta") or {}
            self.usage = merge_delta_usage(self.usage, obj.get("usage"))
            self.stop_reason = delta.get("stop_reason")
            self._phase = 1
            return [MessageDelta(self.stop_reason, delta.get("stop_sequence"), self.usage)]
        if name == "message_stop":
            self._phase = 2
            return [MessageStop()]
        if name == "error":
            self._phase = 2
            err = obj.get("error")
            if isinstance(err, dict):
                self.error = StreamError(str(err.get("type") or "api_error"), str(err.get("message") or ""))
            else:
                self.error = StreamError("api_error", str(err))
            return [self.error]
        return []


def _block_start(index: int, block: dict[str, Any]) -> BlockStart:
    btype = block.get("type")
    if btype == "text":
        return BlockStart(index, "text")
    if btype == "tool_use":
        return BlockStart(index, "tool_use", id=block.get("id"), name=block.get("name"))
    if btype == "thinking":
        return BlockStart(index, "thinking")
    if btype == "redacted_thinking":
        return BlockStart(index, "redacted_thinking", data=block.get("data"))
    return BlockStart(index, "other", raw=block)


# Byte templates for the frequent frames.
_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_DELTA_TAIL = b"}}\n\n"
_DELTA_FIELD = {
    "text": b',"delta":{"type":"text_delta","text":',
    "json": b',"delta":{"type":"input_json_delta","partial_json":',
    "thinking": b',"delta":{"type":"thinking_delta","thinking":',
    "signature": b',"delta":{"type":"signature_delta","signature":',
    "citation": b',"delta":{"type":"citations_delta","citation":',
}
_STOP_HEAD = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
_START_HEAD = b'event: content_block_start\ndata: {"type":"content_block_start","index":'
_START_BODY = {
    "text": b',"content_block":{"type":"text","text":""}}\n\n',
    "thinking": b',"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n',
}
_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class AnthropicStreamEncoder:
    """Canonical events → Anthropic SSE frames, exactly as the Anthropic API writes them.

    ``model`` (the public model name) replaces the upstream's in ``message_start``;
    ``message_id`` when given replaces the event's id.
    """

    __slots__ = ("_message_id", "_model")

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self._model = model
        self._message_id = message_id

    def keepalive(self) -> bytes:
        return _PING

    def encode(self, ev: StreamEvent) -> bytes:
        if type(ev) is BlockDelta:
            value = ev.citation if ev.kind == "citation" else ev.text
            return b"".join(
                (_DELTA_HEAD, b"%d" % ev.index, _DELTA_FIELD[ev.kind], orjson.dumps(value), _DELTA_TAIL)
            )
        if type(ev) is BlockStart:
            body = _START_BODY.get(ev.kind)
            if body is None:
                body = b',"content_block":' + orjson.dumps(_block_wire(ev)) + b"}\n\n"
            return _START_HEAD + b"%d" % ev.index + body
        if type(ev) is BlockStop:
            return _STOP_HEAD + b"%d}\n\n" % ev.index
        if type(ev) is Ping:
            return _PING
        if type(ev) is MessageStart:
            message = {
                "id": self._message_id or ev.id,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": self._model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": anthropic_usage_wire(ev.usage),
            }
            return encode_event("message_start", orjson.dumps({"type": "message_start", "message": message}))
        if type(ev) is MessageDelta:
            body = {
                "type": "message_delta",
                "delta": {"stop_reason": ev.stop_reason, "stop_sequence": ev.stop_sequence},
                "usage": anthropic_usage_wire(ev.usage),
            }
            return encode_event("message_delta", orjson.dumps(body))
        if type(ev) is MessageStop:
            return _MESSAGE_STOP
        if type(ev) is StreamError:
            return stream_error_event(ev.kind, ev.message)
        raise TypeError(f"not a stream event: {ev!r}")


def _block_wire(ev: BlockStart) -> Any:
    if ev.kind == "tool_use":
        return {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}}
    if ev.kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": ev.data or ""}
    return ev.raw if ev.raw is not None else {"type": ev.kind}
