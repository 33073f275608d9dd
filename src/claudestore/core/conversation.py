"""A conversation as the gateway understands it, whatever wire format it came in.

The shape follows the Anthropic Messages API (the richer of the two formats), with
field names kept close to the wire. ``Unknown`` carries any content part the gateway
does not model so that nothing a client sends is silently dropped when the client's
format equals the upstream's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
JSON = dict[str, Any]


@dataclass(slots=True)
class Text:
    text: str
    cache_control: JSON | None = None
    citations: list[JSON] | None = None


@dataclass(slots=True)
class Image:
    """An image: base64 ``data`` with ``media_type``, or a ``url``."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    cache_control: JSON | None = None


@dataclass(slots=True)
class Document:
    """A document (PDF or text). ``source`` is the Anthropic source object as sent."""

    source: JSON
    title: str | None = None
    filename: str | None = None
    extra: JSON = field(default_factory=dict)
    cache_control: JSON | None = None


@dataclass(slots=True)
class ToolUse:
    id: str
    name: str
    input: Any
    cache_control: JSON | None = None


@dataclass(slots=True)
class ToolResult:
    tool_use_id: str
    content: list[Part]
    is_error: bool = False
    cache_control: JSON | None = None


@dataclass(slots=True)
class Thinking:
    thinking: str
    signature: str = ""


@dataclass(slots=True)
class RedactedThinking:
    data: str


@dataclass(slots=True)
class Unknown:
    """A part the gateway does not model; ``raw`` is the wire object of ``origin``."""

    origin: Literal["anthropic", "openai"]
    raw: JSON


Part = Text | Image | Document | ToolUse | ToolResult | Thinking | RedactedThinking | Unknown


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part]


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None
    input_schema: JSON
    strict: bool | None = None
    cache_control: JSON | None = None
    raw: JSON | None = None  # server tools and other non-function tools, as sent (Anthropic shape)


@dataclass(slots=True)
class ToolChoice:
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    """A request to generate one assistant turn."""

    model: str
    messages: list[Message]
    max_tokens: int | None
    system: list[Text] = field(default_factory=list)
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: JSON | None = None  # Anthropic ``thinking`` object
    reasoning_effort: str | None = None
    user: str | None = None
    response_format: JSON | None = None  # OpenAI ``response_format`` shape
    cache_control: JSON | None = None
    include_usage: bool = False  # client asked for usage in the stream (OpenAI)
    # Fields of the client's own format that have no canonical counterpart; forwarded
    # only when the upstream speaks the same format.
    extra: JSON = field(default_factory=dict)
    origin: Literal["anthropic", "openai"] = "anthropic"
    # Features only an upstream of the client's own format can serve, as messages naming
    # them (e.g. OpenAI custom tools); translation to the other format refuses them.
    untranslatable: list[str] = field(default_factory=list)
