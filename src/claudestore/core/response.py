"""A finished assistant turn and its usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from claudestore.core.conversation import Part

StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
]


@dataclass(slots=True)
class Usage:
    """Token counts as the upstream reported them.

    ``input_tokens`` excludes cached tokens (Anthropic's convention); the total
    prompt is ``input_tokens + cache_write_tokens + cache_read_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def merge(self, other: Usage) -> None:
        """Overwrite with the non-zero counts of a later (cumulative) report."""
        if other.input_tokens:
            self.input_tokens = other.input_tokens
        if other.output_tokens:
            self.output_tokens = other.output_tokens
        if other.cache_write_tokens:
            self.cache_write_tokens = other.cache_write_tokens
        if other.cache_read_tokens:
            self.cache_read_tokens = other.cache_read_tokens
        if other.reasoning_tokens is not None:
            self.reasoning_tokens = other.reasoning_tokens


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    content: list[Part]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
