"""OpenAI ChatCompletion JSON ⇄ canonical ``ChatResponse`` (non-streaming, spec B.3, D.4/D.5).

Policies:

- ``reasoning_content`` (or vLLM/OpenRouter's ``reasoning``) → a ``Thinking`` part before the
  text, with an empty signature (the Anthropic renderer mints one); rendering goes the
  other way into ``message.reasoning_content``;
- tool-call ``arguments`` that are not a JSON object are kept as ``{"_raw": "<text>"}``
  rather than failing the whole response; ``tool_arguments`` turns that back into the
  original text;
- ``refusal`` → a text part and stop reason ``refusal``;
- tool calls with finish_reason ``stop`` (Ollama and others) → stop reason ``tool_use``,
  so agent loops keep going;
- several text parts are joined without a separator (what a stream's deltas would give);
  redacted thinking and Anthropic-only blocks (server tools, …) are not rendered.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from claudestore.core.conversation import JSON, Part, Text, Thinking, ToolUse
from claudestore.core.errors import InternalError
from claudestore.core.response import ChatResponse, StopReason
from claudestore.translate import mapping

__all__ = [
    "completion_id",
    "parse_arguments",
    "parse_response",
    "render_response",
    "tool_arguments",
    "tool_call",
]


def parse_arguments(arguments: str) -> dict[str, Any] | None:
    """Tool-call ``arguments`` → the input object; None unless it is a JSON object ("" → {})."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def tool_arguments(tool_input: Any) -> str:
    """A tool call's input → ``arguments`` (compact JSON, or the raw text kept in ``_raw``)."""
    if isinstance(tool_input, dict) and tool_input.keys() == {"_raw"} and isinstance(tool_input["_raw"], str):
        return tool_input["_raw"]
    return json.dumps(tool_input, separators=(",", ":"), ensure_ascii=False)


def tool_call(use: ToolUse) -> JSON:
    """A canonical tool use → an OpenAI ``tool_calls`` entry."""
    return {
        "id": use.id,
        "type": "function",
        "function": {"name": use.name, "arguments": tool_arguments(use.input)},
    }


def completion_id(resp_id: str) -> str:
    """An OpenAI-looking completion id (``chatcmpl-…``) for any canonical response id."""
    if resp_id.startswith("chatcmpl-"):
        return resp_id
    return "chatcmpl-" + (resp_id or uuid.uuid4().hex)


# --- OpenAI wire → canonical ---------------------------------------------------------------


def _tool_use(call: JSON) -> ToolUse | None:
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return None
    args = fn.get("arguments")
    args = args if isinstance(args, str) else json.dumps(args) if args is not None else ""
    parsed = parse_arguments(args)
    call_id = call.get("id")
    call_id = call_id if isinstance(call_id, str) and call_id else "call_" + uuid.uuid4().hex[:24]
    return ToolUse(call_id, fn["name"], parsed if parsed is not None else {"_raw": args})


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """OpenAI ChatCompletion JSON (from an upstream) → canonical."""
    if not isinstance(body, dict):
        raise InternalError("The upstream answered with a completion that is not a JSON object.")
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message: JSON = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append(Thinking(reasoning))
    text = message.get("content")
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p["text"] for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
    if isinstance(text, str) and text:
        content.append(Text(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append(Text(refusal))
    calls = message.get("tool_calls")
    calls = [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    if isinstance(message.get("function_call"), dict):  # legacy
        calls.append({"function": message["function_call"]})
    uses = [use for c in calls if (use := _tool_use(c)) is not None]
    content.extend(uses)
    finish = choice.get("finish_reason")
    stop: StopReason = mapping.stop_reason(finish if isinstance(finish, str) else None)
    if isinstance(refusal, str) and refusal:
        stop = "refusal"
    elif uses and stop == "end_turn":
        stop = "tool_use"
    resp_id, model = body.get("id"), body.get("model")
    return ChatResponse(
        id=resp_id if isinstance(resp_id, str) else "",
        model=model if isinstance(model, str) else "",
        content=content,
        stop_reason=stop,
        usage=mapping.openai_usage(body.get("usage")),
    )


# --- canonical → OpenAI wire ---------------------------------------------------------------


def render_response(resp: ChatResponse, model: str, *, created: int | None = None) -> dict[str, Any]:
    """Canonical → OpenAI ChatCompletion JSON exactly per B.3."""
    texts = [p.text for p in resp.content if isinstance(p, Text)]
    thinking = [p.thinking for p in resp.content if isinstance(p, Thinking)]
    calls = [p for p in resp.content if isinstance(p, ToolUse)]
    message: JSON = {
        "role": "assistant",
        "content": "".join(texts) or None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = [tool_call(c) for c in calls]
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return {
        "id": completion_id(resp.id),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": mapping.finish_reason(resp.stop_reason) or "stop",
            }
        ],
        "usage": mapping.openai_usage_wire(resp.usage),
    }
