"""Behaviour knobs of the fake upstream.

A request chooses how the fake behaves with a directive ``[[fake key=value key=value]]``
anywhere in the text of its *last user turn*, or with a header ``x-fake: key=value; key=value``
(header values win over directive values; later directives win over earlier ones).

The last user turn is the trailing run of messages with role ``user`` (Anthropic) or
``user``/``tool`` (OpenAI), ignoring an assistant prefill at the very end: the turn a gateway would merge
into a single Anthropic user message. Only its plain text counts (string content, ``text``
blocks/parts), never the text inside tool results, so ``[user "...[[fake tool=x]]", assistant
tool call, tool result]`` answers with text and ends the tool loop in both formats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

__all__ = ["DEFAULT_KNOBS", "KnobError", "Knobs", "last_user_text", "parse_knobs", "strip_directives"]

Format = Literal["anthropic", "openai"]

DIRECTIVE_RE: Final = re.compile(r"\[\[fake(?:\s([^\]]*))?\]\]")
_SPLIT_RE: Final = re.compile(r"[\s;,]+")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class KnobError(ValueError):
    """A knob could not be parsed; the server answers 400 invalid_request_error."""


@dataclass(frozen=True, slots=True)
class Knobs:
    tokens: int | None = None  # None: 8, or every word of the user turn with echo
    delay_ms: int = 0
    ttfb_ms: int = 0
    tool: str | None = None
    tools: int = 0
    thinking: int = 0
    status: int | None = None
    retry_after: str | None = None
    cut_after: int | None = None
    stall_after: int | None = None
    stall_ms: int = 60_000
    error_after: int | None = None
    cache_read: int = 0
    cache_write: int = 0
    echo: bool = False

    @property
    def tool_names(self) -> list[str]:
        """Names of the tool calls to emit: NAME, NAME_2, ... (NAME defaults to get_weather)."""
        count = self.tools if self.tools else (1 if self.tool else 0)
        base = self.tool or "get_weather"
        return [base if i == 0 else f"{base}_{i + 1}" for i in range(count)]

    @property
    def streams_plainly(self) -> bool:
        """True when a stream can be written in one go (no pacing or failure knob)."""
        return (
            not self.delay_ms
            and self.cut_after is None
            and self.stall_after is None
            and self.error_after is None
        )


DEFAULT_KNOBS: Final = Knobs()

_INT_KEYS: Final = frozenset(
    {
        "tokens",
        "delay_ms",
        "ttfb_ms",
        "tools",
        "thinking",
        "cut_after",
        "stall_after",
        "stall_ms",
        "error_after",
        "cache_read",
        "cache_write",
    }
)


def _convert(key: str, value: str) -> Any:
    if key in _INT_KEYS:
        try:
            number = int(value)
        except ValueError:
            raise KnobError(f"fake knob {key} needs an integer, got {value!r}") from None
        if number < 0:
            raise KnobError(f"fake knob {key} must be >= 0")
        return number
    if key == "status":
        try:
            code = int(value)
        except ValueError:
            raise KnobError(f"fake knob status needs an integer, got {value!r}") from None
        if not 400 <= code <= 599:
            raise KnobError("fake knob status must be an HTTP error status (400-599)")
        return code
    if key == "retry_after":
        try:
            if float(value) < 0:
                raise ValueError
        except ValueError:
            raise KnobError(f"fake knob retry_after needs seconds, got {value!r}") from None
        return value
    if key == "tool":
        if not _NAME_RE.fullmatch(value):
            raise KnobError("fake knob tool must match [A-Za-z0-9_-]{1,64}")
        return value
    if key == "echo":
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise KnobError(f"fake knob echo needs 0 or 1, got {value!r}")
    raise KnobError(f"unknown fake knob {key!r}")


def _pairs(spec: str, into: dict[str, Any]) -> None:
    for item in _SPLIT_RE.split(spec):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise KnobError(f"fake knob {item!r} is not key=value")
        key = key.strip().lower()
        into[key] = _convert(key, value.strip())


def parse_knobs(text: str, header: str | None = None) -> Knobs:
    """Knobs from directives found in ``text`` and from an ``x-fake`` header value."""
    if not header and "[[fake" not in text:
        return DEFAULT_KNOBS
    values: dict[str, Any] = {}
    for match in DIRECTIVE_RE.finditer(text):
        _pairs(match.group(1) or "", values)
    if header:
        _pairs(header, values)
    return replace(DEFAULT_KNOBS, **values) if values else DEFAULT_KNOBS


def strip_directives(text: str) -> str:
    return DIRECTIVE_RE.sub(" ", text) if "[[fake" in text else text


def _content_text(content: Any, out: list[str]) -> None:
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)


def last_user_text(body: dict[str, Any], fmt: Format) -> str:
    """Plain text of the last user turn (see module docstring), parts joined by newlines."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    turn_roles = ("user",) if fmt == "anthropic" else ("user", "tool")
    end = len(messages) - 1
    while end >= 0 and not (isinstance(messages[end], dict) and messages[end].get("role") in turn_roles):
        end -= 1  # skip an assistant prefill
    start = end
    while (
        start > 0 and isinstance(messages[start - 1], dict) and messages[start - 1].get("role") in turn_roles
    ):
        start -= 1
    out: list[str] = []
    for message in messages[start : end + 1]:
        if message.get("role") == "user":
            _content_text(message.get("content"), out)
    return out[0] if len(out) == 1 else "\n".join(out)
