"""Structured logs: one JSON object per line, with the request id of the request being served.

``claudestore serve --log-format json`` installs ``JSONFormatter`` for the gateway's and
uvicorn's loggers (``log_config``). The request id comes from a context variable that the
generation endpoints set (``request_id_var``), so every line logged while serving a request
carries it, including lines from tasks that request started. Request and response bodies
are never logged; strings that look like API keys are masked in every line as a last guard
(upstream error messages sometimes quote the key they refused).
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JSONFormatter", "log_config", "redact", "request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("claudestore_request_id", default=None)

# Anthropic (sk-ant-…), OpenAI (sk-…, sk-proj-…), ClaudeStore (sk-cs-…) keys, and bearer tokens.
_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{8,}|(Bearer\s+)[A-Za-z0-9._\-]{8,}", re.I)

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "…", text)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            data["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in data:
                data[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(data, default=str).decode()


def log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (and uvicorn ``log_config``) that writes JSON to stderr."""
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "claudestore.observability.logs.JSONFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            "claudestore": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["json"], "level": level, "propagate": False},
        },
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


_requests_log = logging.getLogger("claudestore.requests")


def log_outcome(out: Any) -> None:
    """Outcome listener: one line per finished request (INFO; free when INFO is off)."""
    if not _requests_log.isEnabledFor(logging.INFO):
        return
    _requests_log.info(
        "request finished",
        extra={
            "request_id": out.request_id,
            "endpoint": out.endpoint,
            "model": out.model,
            "upstream": out.upstream,
            "status": out.status,
            "error_kind": out.error_kind,
            "streamed": out.streamed,
            "attempts": getattr(out, "attempts", 1),
            "input_tokens": out.usage.input_tokens,
            "output_tokens": out.usage.output_tokens,
            "latency_ms": None if out.latency_ms is None else round(out.latency_ms, 1),
            "ttft_ms": None if out.ttft_ms is None else round(out.ttft_ms, 1),
            "key_id": out.key_id,
            "account_id": out.account_id,
        },
    )
