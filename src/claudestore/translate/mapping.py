"""Tables shared by both directions of translation: stop reasons and usage.

Billing reads usage only through ``anthropic_usage`` / ``openai_usage`` (wire → canonical),
never from raw JSON elsewhere.
"""

from __future__ import annotations

from typing import Any

from claudestore.core.response import StopReason, Usage

STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}

FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason(stop: str | None) -> str | None:
    """Anthropic ``stop_reason`` → OpenAI ``finish_reason``."""
    if stop is None:
        return None
    return STOP_TO_FINISH.get(stop, "stop")


def stop_reason(finish: str | None) -> StopReason:
    """OpenAI ``finish_reason`` → Anthropic ``stop_reason`` (missing at EOF → end_turn)."""
    if finish is None:
        return "end_turn"
    return FINISH_TO_STOP.get(finish, "end_turn")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def anthropic_usage(wire: dict[str, Any] | None) -> Usage:
    """Anthropic ``usage`` object → canonical."""
    if not isinstance(wire, dict):
        return Usage()
    return Usage(
        input_tokens=_int(wire.get("input_tokens")),
        output_tokens=_int(wire.get("output_tokens")),
        cache_write_tokens=_int(wire.get("cache_creation_input_tokens")),
        cache_read_tokens=_int(wire.get("cache_read_input_tokens")),
    )


def anthropic_usage_wire(usage: Usage) -> dict[str, int]:
    """Canonical → Anthropic ``usage`` (cache fields always present as integers)."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def openai_usage(wire: dict[str, Any] | None) -> Usage:
    """OpenAI ``usage`` object → canonical (``prompt_tokens`` includes cached tokens)."""
    if not isinstance(wire, dict):
        return Usage()
    details = wire.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cache_read = _int(details.get("cached_tokens"))
    cache_write = _int(details.get("cache_write_tokens"))
    completion_details = wire.get("completion_tokens_details")
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    return Usage(
        input_tokens=max(0, _int(wire.get("prompt_tokens")) - cache_read - cache_write),
        output_tokens=_int(wire.get("completion_tokens")),
        cache_write_tokens=cache_write,
        cache_read_tokens=cache_read,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
    )


def openai_usage_wire(usage: Usage) -> dict[str, Any]:
    """Canonical → OpenAI ``usage``."""
    prompt = usage.prompt_tokens
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
    }
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out
