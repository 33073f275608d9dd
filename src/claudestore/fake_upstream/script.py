"""Format-independent plan of one fake answer: tokens, tool calls, usage and stop reason.

Counting rule (``count_input_tokens``), identical for both wire formats:

* 1 token per whitespace-separated word (``len(text.split())``) of every text in the system
  prompt and the messages: string contents, text blocks/parts, refusal parts, tool results
  (``tool_result`` content / ``role: tool`` content), and tool-call inputs dumped with
  ``json.dumps(input)`` (Python's default ``", "``/``": "`` separators; OpenAI ``arguments`` are
  parsed first so both formats dump the same object);
* ``TOOL_DEF_TOKENS`` (10) per tool definition, ``ATTACHMENT_TOKENS`` (50) per image, file,
  audio or non-text document;
* thinking and redacted_thinking blocks given back to the model count 0.

Output: thinking tokens, then text tokens, then tool calls (``TOOL_CALL_TOKENS`` each) spend the
``max_tokens`` budget in that order; when it runs out the answer stops with ``max_tokens``. A
stop sequence equal to a text word (or to that word with its leading space) stops before it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

import orjson

from .knobs import Format, Knobs, last_user_text, strip_directives

__all__ = [
    "ATTACHMENT_TOKENS",
    "DEFAULT_TOKENS",
    "THINK_WORDS",
    "TOOL_ARG_FRAGMENTS",
    "TOOL_CALL_TOKENS",
    "TOOL_DEF_TOKENS",
    "TOOL_INPUT",
    "WORDS",
    "Script",
    "StopReason",
    "build_script",
    "count_input_tokens",
]

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]

DEFAULT_TOKENS: Final = 8
TOOL_CALL_TOKENS: Final = 10
TOOL_DEF_TOKENS: Final = 10
ATTACHMENT_TOKENS: Final = 50
WORDS: Final = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua",
)  # fmt: skip
THINK_WORDS: Final = ("let", "me", "think", "about", "this", "request", "carefully", "first")
TOOL_INPUT: Final = {"city": "Paris", "days": 3}
# Concatenation is json.dumps(TOOL_INPUT); every prefix is valid partial JSON.
TOOL_ARG_FRAGMENTS: Final = ('{"city": ', '"Paris", ', '"days": 3}')
_ATTACHMENTS: Final = frozenset({"image", "image_url", "file", "input_audio", "document"})


@dataclass(slots=True)
class Script:
    thinking: tuple[str, ...]  # token k > 0 starts with a space
    text: tuple[str, ...]
    tools: list[str]  # names of the tool calls, in order
    stop_reason: StopReason
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    cache_read: int
    cache_write: int


def _words(value: Any) -> int:
    return len(value.split()) if isinstance(value, str) else 0


def _json_words(value: Any) -> int:
    return len(json.dumps(value).split())


def _part(part: Any) -> int:
    """One Anthropic content block or OpenAI content part."""
    if not isinstance(part, dict):
        return _words(part)
    kind = part.get("type")
    if kind == "text":
        return _words(part.get("text"))
    if kind == "tool_use" or kind == "server_tool_use":
        return _json_words(part.get("input"))
    if kind == "tool_result":
        return _content(part.get("content"))
    if kind == "refusal":
        return _words(part.get("refusal"))
    if kind == "search_result":
        return _content(part.get("content"))
    if kind == "document":
        source = part.get("source")
        if isinstance(source, dict):
            if source.get("type") == "text":
                return _words(source.get("data"))
            if source.get("type") == "content":
                return _content(source.get("content"))
        return ATTACHMENT_TOKENS
    if kind in _ATTACHMENTS:
        return ATTACHMENT_TOKENS
    return 0


def _content(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(_part(p) for p in content)
    return 0


def _arguments(arguments: Any) -> int:
    if not isinstance(arguments, str):
        return 0
    try:
        return _json_words(orjson.loads(arguments))
    except orjson.JSONDecodeError:
        return len(arguments.split())


def _openai_message(message: dict[str, Any]) -> int:
    total = _content(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                total += _arguments(call["function"].get("arguments"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        total += _arguments(legacy.get("arguments"))
    return total


def count_input_tokens(body: dict[str, Any], fmt: Format) -> int:
    """The fake's input token count for a request body (see module docstring)."""
    total = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            if fmt == "anthropic":
                total += _content(message.get("content"))
            else:
                total += _openai_message(message)
    if fmt == "anthropic":
        total += _content(body.get("system"))
    tools = body.get("tools")
    if isinstance(tools, list):
        total += TOOL_DEF_TOKENS * len(tools)
    functions = body.get("functions")
    if fmt == "openai" and isinstance(functions, list):
        total += TOOL_DEF_TOKENS * len(functions)
    return total


def _tokens(words: Sequence[str], count: int) -> tuple[str, ...]:
    size = len(words)
    return tuple(words[k % size] if k == 0 else " " + words[k % size] for k in range(count))


@lru_cache(maxsize=256)
def _word_tokens(count: int) -> tuple[str, ...]:
    return _tokens(WORDS, count)


@lru_cache(maxsize=256)
def _think_tokens(count: int) -> tuple[str, ...]:
    return _tokens(THINK_WORDS, count)


def build_script(
    body: dict[str, Any],
    fmt: Format,
    knobs: Knobs,
    *,
    max_tokens: int | None,
    stop_sequences: list[str],
    input_tokens: int | None = None,
) -> Script:
    """Plan the answer to ``body``; ``max_tokens`` None means no limit (OpenAI)."""
    if input_tokens is None:
        input_tokens = count_input_tokens(body, fmt)
    source: Sequence[str] = WORDS
    if knobs.echo:
        source = strip_directives(last_user_text(body, fmt)).split()
        wanted = len(source) if knobs.tokens is None else min(knobs.tokens, len(source))
    else:
        wanted = DEFAULT_TOKENS if knobs.tokens is None else knobs.tokens
    budget = max_tokens if max_tokens is not None else 1 << 62
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None

    n_think = min(knobs.thinking, budget)
    budget -= n_think
    if n_think < knobs.thinking:
        stop_reason, wanted = "max_tokens", 0
    n_text = wanted
    if stop_sequences and wanted:
        size = len(source)
        for k in range(wanted):
            word = source[k % size]
            hit = next((s for s in stop_sequences if s == word or s == " " + word), None)
            if hit is not None:
                n_text, stop_reason, stop_sequence = k, "stop_sequence", hit
                break
    if n_text > budget:
        n_text, stop_reason, stop_sequence = budget, "max_tokens", None
    budget -= n_text

    tools: list[str] = []
    if stop_reason == "end_turn" and (knobs.tool or knobs.tools):
        for name in knobs.tool_names:
            if budget < TOOL_CALL_TOKENS:
                stop_reason = "max_tokens"
                break
            budget -= TOOL_CALL_TOKENS
            tools.append(name)
        if tools and stop_reason == "end_turn":
            stop_reason = "tool_use"
    return Script(
        thinking=_think_tokens(n_think) if n_think else (),
        text=_tokens(source, n_text) if source is not WORDS else _word_tokens(n_text),
        tools=tools,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=input_tokens,
        output_tokens=n_think + n_text + TOOL_CALL_TOKENS * len(tools),
        cache_read=knobs.cache_read,
        cache_write=knobs.cache_write,
    )
