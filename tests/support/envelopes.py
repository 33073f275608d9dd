"""Checks of the error envelopes the gateway promises, status-agnostic, for fuzz and security tests.

- Anthropic (``/v1/messages``, ``count_tokens``, ``/v1/models`` with ``anthropic-version``,
  the admin API and the customer API): ``{"type": "error", "error": {"type", "message"},
  "request_id"}``.
- OpenAI (``/v1/chat/completions``, ``/v1/models`` without ``anthropic-version``):
  ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

ANTHROPIC_KINDS = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "conflict_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
    }
)


def _json(resp: httpx.Response) -> Any:
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith("application/json"), (resp.status_code, ctype, resp.content[:300])
    try:
        return json.loads(resp.content)
    except ValueError as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(f"error body is not JSON: {resp.content[:300]!r}") from exc


def request_id(resp: httpx.Response) -> str:
    rid = resp.headers.get("request-id")
    assert rid and rid.startswith("req_"), dict(resp.headers)
    assert resp.headers.get("x-request-id") == rid, dict(resp.headers)
    return rid


def anthropic_error(resp: httpx.Response) -> dict[str, Any]:
    """Asserts the Anthropic envelope; returns the inner ``error`` object."""
    body = _json(resp)
    assert isinstance(body, dict) and set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error", body
    assert body["request_id"] == request_id(resp), body
    error = body["error"]
    assert isinstance(error, dict) and {"type", "message"} <= set(error), body
    assert error["type"] in ANTHROPIC_KINDS, body
    assert isinstance(error["message"], str) and error["message"], body
    assert "Traceback" not in error["message"], body
    return error


def openai_error(resp: httpx.Response) -> dict[str, Any]:
    """Asserts the OpenAI envelope; returns the inner ``error`` object."""
    request_id(resp)
    body = _json(resp)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    assert error["param"] is None or isinstance(error["param"], str), body
    assert error["code"] is None or isinstance(error["code"], str), body
    assert "Traceback" not in error["message"], body
    return error


def error_of(resp: httpx.Response, shape: str) -> dict[str, Any]:
    """The inner error object of a response in ``shape`` ("anthropic" or "openai")."""
    return anthropic_error(resp) if shape == "anthropic" else openai_error(resp)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
