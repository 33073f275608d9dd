"""OpenAI upstream → OpenAI client: relay the chunks as they came, read usage on the way.

A chunk is parsed only when a byte search says it carries something the gateway needs:
a usage object or a finish_reason (searched from the end of the chunk, where they sit),
an ``{"error"`` at the start (OpenAI, vLLM; OpenRouter puts its error beside a
``finish_reason: "error"``, which is parsed anyway), and the first chunk, once, for the
model name. Inside a JSON string every quote is escaped, so these quoted patterns match
only real keys; a false positive costs one parse, never a wrong result.

Policies:
- Model: the first chunk names the model the upstream ran (maybe a dated alias of the
  requested one); when the public name differs from the upstream name, that exact
  ``"model":"<name>"`` text (with the upstream's own spacing) is replaced in every chunk.
- Usage: the gateway always asks the upstream for it. When the client did not, the
  ``choices: []`` usage chunk is dropped; ``"usage":null`` fields, and a usage object
  that an upstream attaches to a chunk with choices, are left alone (the SDK accepts
  both, and rewriting every chunk would cost more than it saves).
- Comments (keep-alives) and ``[DONE]`` are relayed untouched; so are ``event:`` and
  ``id:`` lines some servers add (the SDKs ignore the names; see wire.md §B.4 on ``id:``).
"""

from __future__ import annotations

from typing import Any

import orjson

from claudestore.core.response import StopReason, Usage
from claudestore.core.stream import StreamError
from claudestore.protocol.sse import Frame, json_object
from claudestore.translate.mapping import openai_usage, stop_reason
from claudestore.translate.openai.stream import upstream_error

__all__ = ["OpenAIRelay"]

_MODEL_KEYS = (b'"model":', b'"model": ')


class OpenAIRelay:
    """Relays one OpenAI stream; ``feed`` returns the bytes to send to the client (``b""``: nothing)."""

    __slots__ = (
        "_learn",
        "_new",
        "_old",
        "_public",
        "_wants_usage",
        "deltas",
        "error",
        "finish_reason",
        "saw_done",
        "usage",
    )

    def __init__(self, public_model: str, upstream_model: str, *, client_wants_usage: bool) -> None:
        self._public = public_model
        self._wants_usage = client_wants_usage
        self._learn = public_model != upstream_model  # read the model name from the first chunk
        self._old = b'"model":' + orjson.dumps(upstream_model)
        self._new: bytes | None = None  # replacement for ``_old``, once known
        self.usage = Usage()
        """Canonical usage from the upstream's usage object (the last one wins)."""
        self.finish_reason: str | None = None
        self.saw_done = False
        """``data: [DONE]`` was relayed."""
        self.error: StreamError | None = None
        """Set when a chunk with a top-level ``error`` was relayed."""
        self.deltas = 0
        """Chunks with a non-empty delta relayed (the first carries only the role): a floor for
        output tokens when the stream is cut short."""

    @property
    def stop_reason(self) -> StopReason | None:
        return stop_reason(self.finish_reason) if self.finish_reason is not None else None

    @property
    def complete(self) -> bool:
        """The client got a whole answer (a finish_reason; ``[DONE]`` is optional to the SDKs) or
        the upstream's own error chunk: nothing needs adding at EOF."""
        return self.saw_done or self.finish_reason is not None or self.error is not None

    def feed(self, frame: Frame) -> bytes:
        raw = frame.raw
        if not raw.startswith(b"data: {"):
            data = frame.data
            if data.startswith(b"[DONE]"):
                self.saw_done = True
                return raw
            if not data.lstrip().startswith(b"{"):
                return raw  # comment / keep-alive / not JSON
        # The usage object and the finish_reason sit at the end of a chunk: search from there.
        i = raw.rfind(b'"usage":')
        j = raw.rfind(b'"finish_reason":')
        if (
            (i >= 0 and b"{" in raw[i + 8 : i + 10])
            or (j >= 0 and b'"' in raw[j + 16 : j + 18])
            or raw.startswith(b'data: {"error"')
            or self._learn
        ):
            obj = json_object(frame)
            if self._learn:
                self._learn_model(raw, obj)
            if obj is not None and self._read(obj):
                return b""
        if b'"delta":{"' in raw:
            self.deltas += 1
        if self._new is not None:
            raw = raw.replace(self._old, self._new)
        return raw

    def _read(self, obj: dict[str, Any]) -> bool:
        """Take usage, finish_reason and error from a parsed chunk; True to drop the chunk."""
        if obj.get("error"):
            self.error = StreamError(*upstream_error(obj["error"]))
        choices = obj.get("choices")
        if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"):
            self.finish_reason = choices[0]["finish_reason"]
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = openai_usage(usage)
            return not choices and not self._wants_usage
        return False

    def _learn_model(self, raw: bytes, obj: dict[str, Any] | None) -> None:
        model = obj.get("model") if obj is not None else None
        if not isinstance(model, str) or not model:
            if obj is None or obj.get("error"):  # no name to learn: fall back to the configured one
                self._learn = False
                self._new = b'"model":' + orjson.dumps(self._public)
            return  # e.g. an Azure prompt-filter chunk with "model": "": wait for the next
        self._learn = False
        if model == self._public:
            return
        for key in _MODEL_KEYS:
            old = key + orjson.dumps(model)
            if old in raw:
                self._old, self._new = old, key + orjson.dumps(self._public)
                return
        self._new = b'"model":' + orjson.dumps(self._public)
