"""The Anthropic error envelope: ``{"type":"error","error":{"type","message"},"request_id"}``."""

from __future__ import annotations

from typing import Any

import orjson

from claudestore.core.errors import GatewayError

# Statuses the Anthropic SDK knows; others are mapped onto the nearest one.
_STATUS_FOR_CLIENT = {502: 529, 503: 529, 422: 400}


def status_for(err: GatewayError) -> int:
    return _STATUS_FOR_CLIENT.get(err.status, err.status)


def error_body(err: GatewayError, request_id: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": err.kind, "message": err.message}, "request_id": request_id}
    )


def stream_error_event(kind: str, message: str) -> bytes:
    data = orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


def upstream_error_message(body: Any) -> str | None:
    """The human message from an Anthropic-shaped error body, if it has one."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
    return None
