"""Anthropic upstream → Anthropic client: relay the frames as they came, read usage on the way.

Only ``message_start`` (model rewrite, input usage), ``message_delta`` (stop reason,
cumulative usage), ``message_stop`` and ``error`` are looked at; every other frame costs
one ``startswith``. The event name is read from the frame's first line when it is the
usual ``event: NAME`` and from the parsed frame otherwise.

Model rewrite: ``message_start`` names the model the upstream actually ran, which may be
a dated alias of the requested one. When the public name differs from the upstream
name, the exact JSON text ``"model":"<upstream>"`` is replaced in place (safe: inside a
JSON string every quote is escaped, so the pattern can only be the object key); when
the upstream wrote anything else (another name, other spacing), the one event is
re-encoded with ``message.model`` set to the public name.
"""

from __future__ import annotations

from typing import Any

import orjson

from claudestore.core.response import StopReason, Usage
from claudestore.core.stream import StreamError
from claudestore.protocol.sse import Frame, encode_event, json_object
from claudestore.translate.anthropic.stream import merge_delta_usage
from claudestore.translate.mapping import anthropic_usage

__all__ = ["AnthropicRelay"]


class AnthropicRelay:
    """Relays one Anthropic stream; ``feed`` returns the bytes to send to the client."""

    __slots__ = (
        "_new",
        "_old",
        "_public",
        "_upstream",
        "deltas",
        "error",
        "saw_stop",
        "stop_reason",
        "usage",
    )

    def __init__(self, public_model: str, upstream_model: str) -> None:
        self._public = public_model if public_model != upstream_model else None
        self._upstream = upstream_model
        self._old = b'"model":' + orjson.dumps(upstream_model)
        self._new = b'"model":' + orjson.dumps(public_model)
        self.usage = Usage()
        """Cumulative canonical usage: ``message_start``'s, overwritten by ``message_delta``."""
        self.stop_reason: StopReason | None = None
        self.saw_stop = False
        """``message_stop`` was relayed: the stream completed."""
        self.error: StreamError | None = None
        """Set when an ``event: error`` frame was relayed."""
        self.deltas = 0
        """Content deltas relayed: a floor for output tokens when the stream is cut short."""

    @property
    def complete(self) -> bool:
        """The client got a whole answer (a ``message_delta``; ``message_stop`` is optional to the
        SDKs) or the upstream's own error event: nothing needs adding at EOF."""
        return self.saw_stop or self.stop_reason is not None or self.error is not None

    def feed(self, frame: Frame) -> bytes:
        raw = frame.raw
        if raw.startswith(b"event: content_block_"):  # the bulk: starts, deltas, stops
            if raw.startswith(b"event: content_block_delta"):
                self.deltas += 1
            return raw
        if raw.startswith(b"event: "):
            name = raw[7 : raw.find(b"\n")]
        else:
            event = frame.event
            if event is None:
                return raw  # comment / keep-alive
            name = event.encode()
        if name == b"message_delta":
            obj = json_object(frame)
            if obj is not None:
                self.usage = merge_delta_usage(self.usage, obj.get("usage"))
                delta = obj.get("delta")
                if isinstance(delta, dict) and delta.get("stop_reason"):
                    self.stop_reason = delta["stop_reason"]
        elif name == b"message_start":
            obj = json_object(frame)
            message = obj.get("message") if obj is not None else None
            if isinstance(message, dict):
                self.usage = anthropic_usage(message.get("usage"))
                if self._public is not None:
                    raw = self._rename(raw, obj, message)
        elif name == b"message_stop":
            self.saw_stop = True
        elif name == b"error":
            obj = json_object(frame)
            err = obj.get("error") if obj is not None else None
            if isinstance(err, dict):
                self.error = StreamError(str(err.get("type") or "api_error"), str(err.get("message") or ""))
            else:
                self.error = StreamError("api_error", frame.data.decode("utf-8", "replace"))
        return raw

    def _rename(self, raw: bytes, obj: dict[str, Any], message: dict[str, Any]) -> bytes:
        model = message.get("model")
        if model == self._public:
            return raw
        if model == self._upstream and raw.count(self._old) == 1:
            return raw.replace(self._old, self._new)
        message["model"] = self._public
        return encode_event("message_start", orjson.dumps(obj))
