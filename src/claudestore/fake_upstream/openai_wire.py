"""Render a fake ``Script`` in the OpenAI Chat Completions wire format (wire.md B.3-B.7).

Every chunk of one stream shares a pre-encoded head (id, created, model) and tail; a content
chunk is a byte concatenation around one ``orjson.dumps`` of the token.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final

import orjson

from .script import TOOL_ARG_FRAGMENTS, Script

__all__ = [
    "DONE",
    "FINISH_REASONS",
    "MODELS",
    "MODELS_BODY",
    "STREAM_ERROR",
    "completion_body",
    "error_body",
    "error_fields",
    "model_body",
    "stream_frames",
]

MODELS: Final = ("fake-claude", "fake-gpt")
CREATED: Final = 1_735_689_600  # 2025-01-01T00:00:00Z
DONE: Final = b"data: [DONE]\n\n"
STREAM_ERROR: Final = (
    b'data: {"error":{"message":"The server had an error while processing your request.",'
    b'"type":"server_error","param":null,"code":null}}\n\n'
)
FINISH_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
_ERRORS: Final[dict[int, tuple[str, str | None, str]]] = {
    400: ("invalid_request_error", None, "Invalid request (fake)"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to make this request (fake)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (fake)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (fake)."),
    504: ("server_error", "timeout", "Request timed out (fake)."),
}
_TOOL_ARGS: Final = "".join(TOOL_ARG_FRAGMENTS)


def error_fields(status: int) -> tuple[str, str | None, str]:
    """(error.type, error.code, default message) for an HTTP status."""
    found = _ERRORS.get(status)
    if found:
        return found
    if status >= 500:
        return ("server_error", None, "The server had an error while processing your request.")
    return ("invalid_request_error", None, f"fake upstream error {status}")


def error_body(status: int, message: str | None = None, param: str | None = None) -> bytes:
    kind, code, default = error_fields(status)
    return orjson.dumps(
        {"error": {"message": message or default, "type": kind, "param": param, "code": code}}
    )


def _usage(script: Script) -> dict[str, Any]:
    prompt = script.input_tokens + script.cache_read + script.cache_write
    details: dict[str, int] = {"cached_tokens": script.cache_read, "audio_tokens": 0}
    if script.cache_write:
        details["cache_write_tokens"] = script.cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": script.output_tokens,
        "total_tokens": prompt + script.output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": len(script.thinking),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _call_id(seq: int, i: int) -> str:
    return f"call_fake{seq:06d}_{i}"


def completion_body(script: Script, *, cid: str, model: str, seq: int, created: int = CREATED) -> bytes:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(script.text) if script.text else None,
        "refusal": None,
        "annotations": [],
    }
    if script.thinking:
        message["reasoning_content"] = "".join(script.thinking)
    if script.tools:
        message["tool_calls"] = [
            {"id": _call_id(seq, i), "type": "function", "function": {"name": name, "arguments": _TOOL_ARGS}}
            for i, name in enumerate(script.tools)
        ]
    return orjson.dumps(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "service_tier": "default",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": FINISH_REASONS[script.stop_reason],
                }
            ],
            "usage": _usage(script),
        }
    )


@lru_cache(maxsize=4096)
def _delta(key: bytes, token: str) -> bytes:
    """``{"content":"token"}``; cached, as the default words repeat across requests."""
    return key + orjson.dumps(token) + b"}"


def stream_frames(
    script: Script, *, cid: str, model: str, seq: int, include_usage: bool, created: int = CREATED
) -> list[bytes]:
    """Every SSE frame of the stream, in order, ending with ``data: [DONE]``."""
    ident = (
        b'data: {"id":'
        + orjson.dumps(cid)
        + b',"object":"chat.completion.chunk","created":'
        + str(created).encode()
        + b',"model":'
        + orjson.dumps(model)
        + b',"system_fingerprint":null,"choices":'
    )
    head = ident + b'[{"index":0,"delta":'
    usage_null = b',"usage":null' if include_usage else b""
    tail = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
    frames = [head + b'{"role":"assistant","content":""}' + tail]
    frames.extend(head + _delta(b'{"reasoning_content":', t) + tail for t in script.thinking)
    frames.extend(head + _delta(b'{"content":', t) + tail for t in script.text)
    for i, name in enumerate(script.tools):
        first = {
            "index": i,
            "id": _call_id(seq, i),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        frames.append(head + orjson.dumps({"tool_calls": [first]}) + tail)
        frames.extend(
            head + orjson.dumps({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}) + tail
            for frag in TOOL_ARG_FRAGMENTS
        )
    finish = FINISH_REASONS[script.stop_reason].encode()
    frames.append(head + b'{},"logprobs":null,"finish_reason":"' + finish + b'"}]' + usage_null + b"}\n\n")
    if include_usage:
        frames.append(ident + b'[],"usage":' + orjson.dumps(_usage(script)) + b"}\n\n")
    frames.append(DONE)
    return frames


def model_body(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "fake"}


MODELS_BODY: Final = orjson.dumps({"object": "list", "data": [model_body(m) for m in MODELS]})
