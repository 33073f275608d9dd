"""The canonical stream: the Anthropic event grammar as typed values.

``stream := MessageStart (Ping | BlockStart BlockDelta* BlockStop)* MessageDelta MessageStop``
with ``StreamError`` allowed to end it anywhere. Block indexes are 0, 1, 2, ... in
start order. Usage in ``MessageDelta`` is cumulative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from claudestore.core.conversation import JSON
from claudestore.core.response import StopReason, Usage

BlockKind = Literal["text", "tool_use", "thinking", "redacted_thinking", "other"]
DeltaKind = Literal["text", "json", "thinking", "signature", "citation"]


@dataclass(slots=True)
class MessageStart:
    id: str
    model: str
    usage: Usage


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: BlockKind
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    data: str | None = None  # redacted_thinking
    raw: JSON | None = None  # the wire block for kind "other" (server tools, results)


@dataclass(slots=True)
class BlockDelta:
    index: int
    kind: DeltaKind
    text: str = ""  # text / partial json / thinking / signature
    citation: JSON | None = None


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class MessageDelta:
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: Usage


@dataclass(slots=True)
class MessageStop:
    pass


@dataclass(slots=True)
class Ping:
    pass


@dataclass(slots=True)
class StreamError:
    """The upstream failed after the stream started. ``kind`` is an error kind."""

    kind: str
    message: str


StreamEvent = (
    MessageStart | BlockStart | BlockDelta | BlockStop | MessageDelta | MessageStop | Ping | StreamError
)
