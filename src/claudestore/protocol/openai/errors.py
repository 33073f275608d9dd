"""The OpenAI error envelope: ``{"error":{"message","type","param","code"}}``."""

from __future__ import annotations

from typing import Any

import orjson

from claudestore.core.errors import GatewayError

# Anthropic-style kinds → (OpenAI type, default code).
_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
    "timeout_error": ("server_error", "timeout"),
}

# 529 is Anthropic's own; OpenAI clients get 503 (the SDK maps any >=500 to InternalServerError).
_STATUS_FOR_CLIENT = {529: 503}


def status_for(err: GatewayError) -> int:
    if err.kind == "overloaded_error":
        return 503  # wire.md D.7: Anthropic's 529 (and an unreachable or overloaded upstream) → 503
    if err.status == 402:
        return 429  # OpenAI reports exhausted credit as 429 insufficient_quota
    return _STATUS_FOR_CLIENT.get(err.status, err.status)


# The gateway's own limiter codes → OpenAI's (type, code) for a 429.
_RATE_LIMIT_CODES: dict[str, tuple[str, str]] = {
    "rate_limit_requests": ("requests", "rate_limit_exceeded"),
    "concurrency_limit": ("requests", "rate_limit_exceeded"),
    "rate_limit_tokens": ("tokens", "rate_limit_exceeded"),
    "request_too_large_for_tpm": ("tokens", "rate_limit_exceeded"),
    "quota_exceeded": ("insufficient_quota", "insufficient_quota"),
    "insufficient_balance": ("insufficient_quota", "insufficient_quota"),
}


def error_object(
    kind: str, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    if code in _RATE_LIMIT_CODES:
        typ, code = _RATE_LIMIT_CODES[code]
        return {"message": message, "type": typ, "param": param, "code": code}
    typ, default_code = _TYPES.get(kind, ("server_error", None))
    return {"message": message, "type": typ, "param": param, "code": code or default_code}


def error_body(err: GatewayError, request_id: str) -> bytes:
    return orjson.dumps({"error": error_object(err.kind, err.message, param=err.param, code=err.code)})


def stream_error_event(kind: str, message: str) -> bytes:
    return b"data: " + orjson.dumps({"error": error_object(kind, message)}) + b"\n\n"


def upstream_error_message(body: Any) -> str | None:
    """The human message from an OpenAI-shaped error body (or a bare ``{"error": "..."}``)."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(body.get("detail"), str):  # FastAPI-based servers (vLLM)
            return body["detail"]
    return None
