"""OpenAI ``chat.completion.chunk`` streams ⇄ canonical stream events (wire.md §B.4, §D.4, §D.5).

``OpenAIStreamDecoder`` is the D.5 state machine for OpenAI(-compatible) upstreams. It
guarantees the canonical grammar whatever the upstream sends: one block open at a time,
indexes 0, 1, 2, … in start order, a signature before a thinking block's stop, and one
MessageDelta + MessageStop or one StreamError at the end. Policies:

- Tool calls: a tool block streams live. A fragment for another tool index switches
  blocks when the open tool's arguments already parse as complete JSON (the sequential
  case); otherwise (interleaving upstreams) it is buffered and replayed, joined, when its
  turn comes. Late fragments for a closed tool are dropped.
- ``reasoning_content`` wins over ``reasoning`` (vLLM sends both during its rename).
  ``refusal`` text becomes text, and the stop reason ``refusal``.
- The end: ``[DONE]``, the ``choices: []`` usage chunk after a finish_reason, or
  ``finish()`` at EOF; EOF with neither finish_reason nor ``[DONE]`` is a dead upstream.

``OpenAIStreamEncoder`` renders canonical events (from an Anthropic upstream) per D.4.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from claudestore.core.errors import ERROR_KINDS
from claudestore.core.response import StopReason, Usage
from claudestore.core.stream import (
    BlockDelta,
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamError,
    StreamEvent,
)
from claudestore.protocol.openai.errors import stream_error_event
from claudestore.protocol.sse import Frame
from claudestore.translate.anthropic.response import mint_signature
from claudestore.translate.mapping import finish_reason, openai_usage, openai_usage_wire, stop_reason

__all__ = ["OpenAIStreamDecoder", "OpenAIStreamEncoder", "upstream_error"]

# An upstream error's OpenAI type or code → canonical kind (Anthropic kinds, which some servers use, map to themselves).
_ERROR_KINDS = {kind: kind for kind in ERROR_KINDS.values()} | {
    "invalid_api_key": "authentication_error",
    "model_not_found": "not_found_error",
    "insufficient_quota": "billing_error",
    "requests": "rate_limit_error",
    "tokens": "rate_limit_error",
    "rate_limit_exceeded": "rate_limit_error",
    "server_error": "api_error",
    "overloaded": "overloaded_error",
    "service_unavailable": "overloaded_error",
    "timeout": "timeout_error",
}

_NONE, _TEXT, _THINKING, _TOOL = 0, 1, 2, 3


class _Tool:
    __slots__ = ("args", "id", "key", "name")

    def __init__(self, key: int, id: str, name: str) -> None:
        self.key = key  # the upstream's tool-call index
        self.id = id
        self.name = name
        self.args: list[str] = []


class OpenAIStreamDecoder:
    """OpenAI upstream frames → canonical events.

    ``usage`` is the usage seen so far; ``stop_reason`` and ``error`` are set at the end.
    """

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._next = 0  # next block index
        self._open = _NONE  # kind of the open block
        self._index = -1  # its index
        self._tool: _Tool | None = None  # the open tool block
        self._pending: dict[int, _Tool] = {}  # tool indexes seen but not opened yet, in order
        self._closed: set[int] = set()  # tool indexes opened (and so never opened again)
        self._thinking: list[str] = []
        self._finish: str | None = None
        self._refusal = False
        self.usage = Usage()
        self.stop_reason: StopReason | None = None
        self.error: StreamError | None = None

    def feed(self, frame: Frame) -> list[StreamEvent]:
        data = frame.data
        if not data or self._done:
            return []
        if data.startswith(b"[DONE]"):
            return self._end()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            return self._fail("api_error", "The upstream sent a stream chunk that is not a JSON object.")
        if chunk.get("error"):
            return self._fail(*upstream_error(chunk["error"]))
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if not choices and not usage:
            return []  # e.g. Azure prompt-filter frames
        out: list[StreamEvent] = []
        if not self._started:
            self._start(chunk, out)
        if isinstance(usage, dict):
            self.usage = openai_usage(usage)
        if not choices:
            return out + self._end() if self._finish is not None else out
        choice = choices[0]
        delta = choice.get("delta")
        if delta:
            self._delta(delta, out)
        self._finish = choice.get("finish_reason") or self._finish
        return out

    def finish(self) -> list[StreamEvent]:
        """The upstream's body ended (EOF). Idempotent."""
        if self._done:
            return []
        if self._finish is None:
            return self._fail("api_error", "upstream closed the stream unexpectedly")
        return self._end()

    def _start(self, chunk: dict[str, Any], out: list[StreamEvent]) -> None:
        self._started = True
        cid = chunk.get("id")
        mid = "msg_" + (cid.removeprefix("chatcmpl-") if isinstance(cid, str) and cid else uuid.uuid4().hex)
        model = chunk.get("model")
        out.append(MessageStart(mid, model if isinstance(model, str) else "", Usage()))

    def _end(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._started:
            self._start({}, out)
        self._close(out)
        reason = "refusal" if self._refusal and self._finish in (None, "stop") else stop_reason(self._finish)
        self.stop_reason = reason
        out.append(MessageDelta(reason, None, self.usage))
        out.append(MessageStop())
        self._done = True
        return out

    def _fail(self, kind: str, message: str) -> list[StreamEvent]:
        self._done = True
        self.error = StreamError(kind, message)
        return [self.error]

    def _delta(self, delta: dict[str, Any], out: list[StreamEvent]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            if self._open != _THINKING:
                self._close(out)
                self._open_block(_THINKING, BlockStart(self._next, "thinking"), out)
            self._thinking.append(reasoning)
            out.append(BlockDelta(self._index, "thinking", reasoning))
        content = delta.get("content")
        if content and isinstance(content, str):
            self._text(content, out)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._refusal = True
            self._text(refusal, out)
        calls = delta.get("tool_calls")
        if calls:
            for j, call in enumerate(calls):
                self._tool_delta(call, j, out)

    def _text(self, text: str, out: list[StreamEvent]) -> None:
        if self._open != _TEXT:
            self._close(out)
            self._open_block(_TEXT, BlockStart(self._next, "text"), out)
        out.append(BlockDelta(self._index, "text", text))

    def _tool_delta(self, call: dict[str, Any], j: int, out: list[StreamEvent]) -> None:
        k = call.get("index", j)
        fn = call.get("function") or {}
        args = fn.get("arguments")
        args = args if isinstance(args, str) else ""
        tool = self._tool
        if tool is not None and k == tool.key:
            if args:
                tool.args.append(args)
                out.append(BlockDelta(self._index, "json", args))
            return
        if k in self._closed:
            return  # a late fragment for a tool already closed (its JSON was complete)
        pending = self._pending.get(k)
        if pending is None:
            cid = call.get("id")
            name = fn.get("name")
            pending = _Tool(
                k,
                cid if isinstance(cid, str) and cid else "toolu_" + uuid.uuid4().hex[:24],
                name if isinstance(name, str) else "",
            )
            self._pending[k] = pending
        if args:
            pending.args.append(args)
        # Switch only when the open tool is finished; otherwise keep buffering (interleaving).
        while self._pending and (tool is None or _complete(tool.args)):
            self._close_current(out)
            tool = self._pending.pop(next(iter(self._pending)))
            self._open_tool(tool, out)

    def _open_tool(self, tool: _Tool, out: list[StreamEvent]) -> None:
        self._open_block(_TOOL, BlockStart(self._next, "tool_use", id=tool.id, name=tool.name), out)
        self._tool = tool
        self._closed.add(tool.key)
        if tool.args:
            joined = "".join(tool.args)
            tool.args = [joined]
            out.append(BlockDelta(self._index, "json", joined))

    def _open_block(self, kind: int, start: BlockStart, out: list[StreamEvent]) -> None:
        self._open = kind
        self._index = start.index
        self._next += 1
        out.append(start)

    def _close_current(self, out: list[StreamEvent]) -> None:
        if self._open == _NONE:
            return
        if self._open == _THINKING:
            out.append(BlockDelta(self._index, "signature", mint_signature("".join(self._thinking))))
            self._thinking = []
        out.append(BlockStop(self._index))
        self._open = _NONE
        self._tool = None

    def _close(self, out: list[StreamEvent]) -> None:
        """Close the open block, then replay every buffered tool call as a whole block."""
        self._close_current(out)
        while self._pending:
            tool = self._pending.pop(next(iter(self._pending)))
            self._open_tool(tool, out)
            self._close_current(out)


def _complete(args: list[str]) -> bool:
    """Do the fragments so far form a complete JSON value? (``""`` does not.)"""
    try:
        orjson.loads("".join(args))
    except orjson.JSONDecodeError:
        return False
    return True


def upstream_error(err: Any) -> tuple[str, str]:
    """An upstream stream's ``error`` value → canonical (kind, message)."""
    if not isinstance(err, dict):
        return "api_error", str(err)
    message = err.get("message")
    kind = _ERROR_KINDS.get(str(err.get("type"))) or _ERROR_KINDS.get(str(err.get("code"))) or "api_error"
    return kind, message if isinstance(message, str) and message else "The upstream reported an error."


class OpenAIStreamEncoder:
    """Canonical events → data-only ``chat.completion.chunk`` frames (D.4); ``b""`` when nothing is due.

    The role appears only in the first chunk, a tool's id/name only in its first
    fragment; with ``include_usage`` every chunk carries ``"usage":null`` and the usage
    chunk (``choices: []``) comes last, just before ``[DONE]``. Chunks are assembled from
    byte templates: only the varying strings go through ``orjson.dumps``.
    """

    __slots__ = ("_finished", "_fixed_id", "_head", "_meta", "_prefix", "_tail", "_tools", "_usage")

    def __init__(
        self, model: str, *, include_usage: bool, completion_id: str | None = None, created: int | None = None
    ) -> None:
        created = created if created is not None else int(time.time())
        meta = b',"object":"chat.completion.chunk","created":%d,"model":%b,'
        self._meta = meta % (created, orjson.dumps(model))
        self._fixed_id = completion_id
        end = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._tail = b'},"logprobs":null,"finish_reason":null}]' + end  # ends every chunk but the usage one
        self._usage: Usage | None = Usage() if include_usage else None
        self._tools: dict[int, int] = {}  # block index → tool_calls index (0, 1, … over tool blocks)
        self._finished = False
        self._set_id(completion_id or "chatcmpl-" + uuid.uuid4().hex)

    def _set_id(self, cid: str) -> None:
        self._prefix = b'data: {"id":' + orjson.dumps(cid) + self._meta
        self._head = self._prefix + b'"choices":[{"index":0,"delta":'

    def keepalive(self) -> bytes:
        return b": ping\n\n"

    def _chunk(self, delta: bytes, value: bytes = b"") -> bytes:
        """A chunk whose ``delta`` object is ``delta + value + "}"``."""
        return b"".join((self._head, delta, value, self._tail))

    def encode(self, ev: StreamEvent) -> bytes:
        if type(ev) is BlockDelta:
            kind = ev.kind
            if kind == "text":
                return self._chunk(b'{"content":', orjson.dumps(ev.text))
            if kind == "json":
                k = self._tools.get(ev.index)
                if k is None or not ev.text:
                    return b""
                frag = orjson.dumps(ev.text)
                return self._chunk(b'{"tool_calls":[{"index":%d,"function":{"arguments":%b}}]' % (k, frag))
            if kind == "thinking":
                return self._chunk(b'{"reasoning_content":', orjson.dumps(ev.text))
            return b""  # signature, citation
        if type(ev) is BlockStart:
            if ev.kind != "tool_use":
                return b""
            k = self._tools[ev.index] = len(self._tools)
            call = b'{"tool_calls":[{"index":%d,"id":%b,"type":"function","function":{"name":%b,"arguments":""}}]'
            return self._chunk(call % (k, orjson.dumps(ev.id), orjson.dumps(ev.name)))
        if type(ev) is MessageStart:
            if self._fixed_id is None:
                self._set_id("chatcmpl-" + ev.id)
            return self._chunk(b'{"role":"assistant","content":""')
        if type(ev) is MessageDelta:
            if self._usage is not None:
                self._usage = ev.usage
            if self._finished:
                return b""
            self._finished = True
            reason = orjson.dumps(finish_reason(ev.stop_reason) or "stop")
            return (
                self._head + b"{" + self._tail.replace(b'"finish_reason":null', b'"finish_reason":' + reason)
            )
        if type(ev) is MessageStop:
            if self._usage is None:
                return b"data: [DONE]\n\n"
            usage = orjson.dumps(openai_usage_wire(self._usage))
            return b"".join((self._prefix, b'"choices":[],"usage":', usage, b"}\n\ndata: [DONE]\n\n"))
        if type(ev) is StreamError:
            return stream_error_event(ev.kind, ev.message)
        return b""  # BlockStop, Ping
