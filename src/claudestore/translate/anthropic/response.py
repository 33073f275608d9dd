"""Anthropic Message JSON ⇄ canonical ``ChatResponse`` (non-streaming, spec A.5).

``parse_response`` reads an Anthropic upstream's answer; it is lenient (an upstream's
odd block becomes an ``Unknown`` part, missing fields get defaults) and raises only when
the body is not an object. ``render_response`` writes the exact A.5 shape for an
Anthropic client.

Thinking blocks that did not come from Anthropic (an OpenAI-compatible upstream's
``reasoning_content``) have no signature. The client must be able to echo them back, so
they get a gateway-minted one (D.6): ``GATEWAY_SIGNATURE_PREFIX`` + a hash of the text.
The prefix uses ``.``, which is not in the base64 alphabet of real signatures, so
``is_gateway_signature`` never mistakes a real one; the request translator drops such
blocks before calling an Anthropic upstream (which would reject them with a 400). The
scheme is the same as the stream translator's (``translate.openai.stream``), so a block
gets the same signature whether it was streamed or not.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any, cast

from claudestore.core.conversation import (
    JSON,
    Part,
    RedactedThinking,
    Text,
    Thinking,
    ToolUse,
    Unknown,
)
from claudestore.core.errors import InternalError
from claudestore.core.response import ChatResponse, StopReason
from claudestore.translate import mapping

__all__ = [
    "GATEWAY_SIGNATURE_PREFIX",
    "is_gateway_signature",
    "message_id",
    "mint_signature",
    "parse_response",
    "render_response",
]

GATEWAY_SIGNATURE_PREFIX = "csgw1."


def mint_signature(thinking: str) -> str:
    """A recognisable, deterministic, opaque signature for a gateway-made thinking block."""
    digest = hashlib.blake2b(thinking.encode(), digest_size=24).digest()
    return GATEWAY_SIGNATURE_PREFIX + base64.urlsafe_b64encode(digest).decode()


def is_gateway_signature(sig: object) -> bool:
    """True for a signature minted by ``mint_signature`` (never for a real Anthropic one)."""
    return isinstance(sig, str) and sig.startswith(GATEWAY_SIGNATURE_PREFIX)


def message_id(resp_id: str) -> str:
    """An Anthropic-looking message id (``msg_…``) for any canonical response id."""
    if resp_id.startswith("msg_"):
        return resp_id
    rest = resp_id.removeprefix("chatcmpl-")
    return "msg_" + (rest or uuid.uuid4().hex)


# --- Anthropic wire → canonical ------------------------------------------------------------


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _parse_block(block: JSON) -> Part:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        citations = block.get("citations")
        return Text(block["text"], citations=citations if isinstance(citations, list) else None)
    if kind == "thinking":
        return Thinking(_str(block.get("thinking")), _str(block.get("signature")))
    if kind == "redacted_thinking":
        return RedactedThinking(_str(block.get("data")))
    if kind == "tool_use" and isinstance(block.get("id"), str) and isinstance(block.get("name"), str):
        tool_input = block.get("input")
        return ToolUse(block["id"], block["name"], tool_input if tool_input is not None else {})
    return Unknown("anthropic", block)


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """Anthropic Message JSON (from an upstream) → canonical."""
    if not isinstance(body, dict):
        raise InternalError("The upstream answered with a message that is not a JSON object.")
    blocks = body.get("content")
    content = [_parse_block(b) for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []
    stop = body.get("stop_reason")
    stop_sequence = body.get("stop_sequence")
    return ChatResponse(
        id=_str(body.get("id")),
        model=_str(body.get("model")),
        content=content,
        # Kept verbatim (even a value newer than our Literal) so Anthropic clients see it.
        stop_reason=cast(StopReason, stop) if isinstance(stop, str) else None,
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        usage=mapping.anthropic_usage(body.get("usage")),
    )


# --- canonical → Anthropic wire ------------------------------------------------------------


def _render_block(part: Part) -> JSON | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text, "citations": part.citations or None}
    if isinstance(part, Thinking):
        signature = part.signature or mint_signature(part.thinking)
        return {"type": "thinking", "thinking": part.thinking, "signature": signature}
    if isinstance(part, RedactedThinking):
        return {"type": "redacted_thinking", "data": part.data}
    if isinstance(part, ToolUse):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.input}
    if isinstance(part, Unknown) and part.origin == "anthropic":
        return dict(part.raw)
    # Images, documents, tool results and OpenAI-only parts are not response blocks.
    return None


def render_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    """Canonical → Anthropic Message JSON exactly per A.5."""
    content = [block for part in resp.content if (block := _render_block(part)) is not None]
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": resp.stop_reason or "end_turn",
        "stop_sequence": resp.stop_sequence,
        "usage": mapping.anthropic_usage_wire(resp.usage),
    }
