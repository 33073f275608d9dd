"""Render a fake ``Script`` in the Anthropic Messages wire format (wire.md A.5-A.10).

Fixed frames are encoded once at import; per-token frames are a byte concatenation around one
``orjson.dumps`` of the token.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final

import orjson

from .script import TOOL_ARG_FRAGMENTS, TOOL_INPUT, Script

__all__ = [
    "MODELS",
    "MODELS_BODY",
    "PING",
    "SIGNATURE",
    "STREAM_ERROR",
    "error_body",
    "error_type",
    "message_body",
    "model_body",
    "stream_frames",
]

MODELS: Final = ("fake-claude", "fake-gpt")
SIGNATURE: Final = "ZmFrZS10aGlua2luZy1zaWduYXR1cmU="
PING: Final = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP: Final = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
STREAM_ERROR: Final = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)
_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES: Final = {
    "rate_limit_error": "Number of requests has exceeded your rate limit (fake)",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
}
_TOOL_FRAGMENTS: Final = ("", *TOOL_ARG_FRAGMENTS)


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, request_id: str, message: str | None = None, kind: str | None = None) -> bytes:
    kind = kind or error_type(status)
    message = message or _ERROR_MESSAGES.get(kind) or f"fake upstream error {status}"
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    )


def _usage(script: Script, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": script.input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": script.cache_write,
        "cache_read_input_tokens": script.cache_read,
    }


def _tool_id(seq: int, i: int) -> str:
    return f"toolu_fake{seq:06d}_{i}"


def message_body(script: Script, *, msg_id: str, model: str, seq: int) -> bytes:
    content: list[dict[str, Any]] = []
    if script.thinking:
        content.append({"type": "thinking", "thinking": "".join(script.thinking), "signature": SIGNATURE})
    if script.text:
        content.append({"type": "text", "text": "".join(script.text), "citations": None})
    for i, name in enumerate(script.tools):
        content.append({"type": "tool_use", "id": _tool_id(seq, i), "name": name, "input": TOOL_INPUT})
    return orjson.dumps(
        {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": script.stop_reason,
            "stop_sequence": script.stop_sequence,
            "usage": _usage(script, script.output_tokens),
        }
    )


def _frame(event: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@lru_cache(maxsize=64)
def _block_frames(index: int) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """(text start, thinking start, text delta prefix, thinking delta prefix, stop) for ``index``."""
    i = str(index).encode()
    head = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":' + i
    return (
        _frame("content_block_start", {"type": "content_block_start", "index": index,
                                       "content_block": {"type": "text", "text": ""}}),
        _frame("content_block_start", {"type": "content_block_start", "index": index,
                                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        head + b',"delta":{"type":"text_delta","text":',
        head + b',"delta":{"type":"thinking_delta","thinking":',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":' + i + b"}\n\n",
    )  # fmt: skip


@lru_cache(maxsize=4096)
def _delta_frame(prefix: bytes, token: str) -> bytes:
    """A text/thinking delta frame; cached, as the default words repeat across requests."""
    return prefix + orjson.dumps(token) + b"}}\n\n"


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _frame("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def stream_frames(script: Script, *, msg_id: str, model: str, seq: int) -> list[bytes]:
    """Every SSE frame of the stream, in order (message_start is frame 1, ping frame 2)."""
    start_usage = _usage(script, 1 if script.output_tokens else 0)
    frames = [
        _frame(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        ),
        PING,
    ]
    index = 0
    if script.thinking:
        _, start, _, prefix, stop = _block_frames(index)
        frames.append(start)
        frames.extend(_delta_frame(prefix, tok) for tok in script.thinking)
        frames.append(_delta(index, {"type": "signature_delta", "signature": SIGNATURE}))
        frames.append(stop)
        index += 1
    if script.text:
        start, _, prefix, _, stop = _block_frames(index)
        frames.append(start)
        frames.extend(_delta_frame(prefix, tok) for tok in script.text)
        frames.append(stop)
        index += 1
    for i, name in enumerate(script.tools):
        block = {"type": "tool_use", "id": _tool_id(seq, i), "name": name, "input": {}}
        frames.append(
            _frame(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        frames.extend(_delta(index, {"type": "input_json_delta", "partial_json": f}) for f in _TOOL_FRAGMENTS)
        frames.append(_block_frames(index)[4])
        index += 1
    frames.append(
        _frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": script.stop_reason, "stop_sequence": script.stop_sequence},
                "usage": _usage(script, script.output_tokens),
            },
        )
    )
    frames.append(MESSAGE_STOP)
    return frames


def model_body(model_id: str) -> dict[str, Any]:
    display = " ".join(part.capitalize() for part in model_id.split("-"))
    return {"type": "model", "id": model_id, "display_name": display, "created_at": "2025-01-01T00:00:00Z"}


MODELS_BODY: Final = orjson.dumps(
    {"data": [model_body(m) for m in MODELS], "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
)
