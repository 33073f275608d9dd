"""Anthropic ``/v1/messages`` request body ⇄ canonical ``ChatRequest`` (spec A.2-A.4, D.1).

``parse_request`` validates (naming the field: ``messages.2.content.0.text``); unmodelled
block types become ``Unknown`` parts, unmodelled top-level fields go to ``extra``.

``build_request`` policies: one plain text block is written as a string; empty or
whitespace-only text blocks (rejected by the API), then empty messages, are dropped;
same-role neighbours are merged, tool_result blocks first; thinking blocks without a real
signature (empty or gateway-minted) are dropped; ``reasoning_effort`` (with ``thinking``
unset) → ``EFFORT_BUDGETS`` budget, added to a defaulted ``max_tokens`` or clamped below a
given one (skipped under 1024, or when the last assistant turn called tools without a
signed thinking block, which the API would reject), temperature/top_p/top_k then dropped;
temperature clamped to ≤ 1; ``seed`` dropped; json_schema ``response_format`` →
``output_config.format``, json_object → a system instruction; a document's ``filename``
becomes its ``title``.
"""

from __future__ import annotations

from typing import Any

from claudestore.core.conversation import (
    JSON,
    ChatRequest,
    Document,
    Image,
    Message,
    Part,
    RedactedThinking,
    Text,
    Thinking,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
    Unknown,
)
from claudestore.core.errors import InvalidRequest, Unsupported
from claudestore.translate.anthropic.response import is_gateway_signature
from claudestore.translate.fields import typed

__all__ = ["EFFORT_BUDGETS", "JSON_OBJECT_INSTRUCTION", "build_request", "parse_request"]

# reasoning_effort → thinking budget (D.1 [policy]); budget + 4096 stays under 32k output.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576, "max": 27648}
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

_MODELLED = {"model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature", "top_p"}
_MODELLED |= {"top_k", "tools", "tool_choice", "thinking", "metadata", "cache_control"}
_TOOL_KEYS = frozenset({"name", "description", "input_schema", "strict", "cache_control"})
_TOOL_CHOICES = ("auto", "any", "tool", "none")


# --- validation helpers ----------------------------------------------------------------------


def _fail(param: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {problem}", param=param)


def _req_str(obj: JSON, key: str, param: str = "") -> str:
    value, param = obj.get(key), f"{param}.{key}" if param else key
    if value is None:
        raise _fail(param, "field required")
    if not isinstance(value, str):
        raise _fail(param, f"must be a string, got {type(value).__name__}")
    return value


def _req_source(block: JSON, param: str) -> JSON:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _fail(f"{param}.source", "field required (an object)")
    return source


def _opt(obj: JSON, key: str, kind: type, param: str | None = None) -> Any:
    """``obj[key]`` if present and not null, checked to be a ``kind`` (float: any number)."""
    return typed(obj, key, kind, param or key, _fail, "must be")


def _cache_control(block: JSON, param: str) -> JSON | None:
    value: JSON | None = _opt(block, "cache_control", dict, f"{param}.cache_control")
    return value


# --- wire → canonical ------------------------------------------------------------------------


def _parse_block(block: Any, param: str) -> Part:
    if not isinstance(block, dict):
        raise _fail(param, "must be a content block object")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _fail(f"{param}.type", "field required (a string)")
    cc = _cache_control(block, param)
    if kind == "text":
        citations = _opt(block, "citations", list, f"{param}.citations")
        return Text(_req_str(block, "text", param), cc, citations)
    if kind == "image":
        source, src = _req_source(block, param), f"{param}.source"
        if source.get("type") == "base64":
            return Image(_req_str(source, "media_type", src), _req_str(source, "data", src), cache_control=cc)
        if source.get("type") == "url":
            return Image(url=_req_str(source, "url", src), cache_control=cc)
        return Unknown("anthropic", block)  # file sources and newer kinds: pass-through only
    if kind == "document":
        source, title = _req_source(block, param), block.get("title")
        keep = {"type", "source", "cache_control"} | ({"title"} if isinstance(title, str) else set())
        extra = {k: v for k, v in block.items() if k not in keep}
        return Document(source, title if isinstance(title, str) else None, extra=extra, cache_control=cc)
    if kind == "tool_use":
        if "input" not in block:
            raise _fail(f"{param}.input", "field required")
        return ToolUse(_req_str(block, "id", param), _req_str(block, "name", param), block["input"], cc)
    if kind == "tool_result":
        raw = block.get("content")
        content = [] if raw is None else _parse_content(raw, f"{param}.content")
        is_error = _opt(block, "is_error", bool, f"{param}.is_error")
        return ToolResult(_req_str(block, "tool_use_id", param), content, bool(is_error), cc)
    if kind == "thinking":
        signature = _opt(block, "signature", str, f"{param}.signature")
        return Thinking(_req_str(block, "thinking", param), signature or "")
    if kind == "redacted_thinking":
        return RedactedThinking(_req_str(block, "data", param))
    return Unknown("anthropic", block)


def _parse_content(value: Any, param: str) -> list[Part]:
    if isinstance(value, str):
        return [Text(value)]
    if isinstance(value, list):
        return [_parse_block(block, f"{param}.{j}") for j, block in enumerate(value)]
    if value is None:
        raise _fail(param, "field required")
    raise _fail(param, f"must be a string or a list of content blocks, got {type(value).__name__}")


def _parse_system(value: Any, param: str) -> list[Text]:
    if isinstance(value, str):
        return [Text(value)]
    if value is None:
        raise _fail(param, "field required")
    if not isinstance(value, list):
        raise _fail(param, f"must be a string or a list of text blocks, got {type(value).__name__}")
    out: list[Text] = []
    for j, block in enumerate(value):
        part = _parse_block(block, f"{param}.{j}")
        if not isinstance(part, Text):
            raise _fail(f"{param}.{j}.type", "only text blocks are allowed in the system prompt")
        out.append(part)
    return out


def _parse_tool(tool: Any, param: str) -> Tool:
    if not isinstance(tool, dict):
        raise _fail(param, "must be a tool object")
    name = _req_str(tool, "name", param)
    cc = _cache_control(tool, param)
    kind = tool.get("type")
    if kind is None or kind == "custom":
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _fail(f"{param}.input_schema", "field required (a JSON Schema object)")
        desc = _opt(tool, "description", str, f"{param}.description")
        strict = _opt(tool, "strict", bool, f"{param}.strict")
        # Keys we do not model (type, input_examples, defer_loading, …) keep the raw tool.
        raw = dict(tool) if set(tool) - _TOOL_KEYS else None
        return Tool(name, desc, schema, strict, cc, raw)
    if not isinstance(kind, str):
        raise _fail(f"{param}.type", "must be a string")
    return Tool(name, None, {}, None, cc, raw=dict(tool))  # server tool, e.g. web_search_20250305


def _parse_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in _TOOL_CHOICES:
        raise _fail("tool_choice.type", "must be one of 'auto', 'any', 'tool', 'none'")
    name = _req_str(value, "name", "tool_choice") if value["type"] == "tool" else None
    dpt = _opt(value, "disable_parallel_tool_use", bool, "tool_choice.disable_parallel_tool_use")
    return ToolChoice(value["type"], name, dpt)


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """Anthropic ``/v1/messages`` body → canonical. Raises ``InvalidRequest``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = _req_str(body, "model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _fail("max_tokens", "field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise _fail("max_tokens", f"must be an integer >= 0, got {max_tokens!r}")
    if (raw_messages := _opt(body, "messages", list)) is None:
        raise _fail("messages", "field required")

    system = [] if body.get("system") is None else _parse_system(body["system"], "system")
    messages: list[Message] = []
    for i, msg in enumerate(raw_messages):
        param = f"messages.{i}"
        if not isinstance(msg, dict):
            raise _fail(param, "must be an object with 'role' and 'content'")
        role = msg.get("role")
        if role not in ("user", "assistant", "system"):
            raise _fail(f"{param}.role", f"must be 'user', 'assistant' or 'system', got {role!r}")
        if role == "system":  # A2-era clients: hoisted into the system prompt, in order
            system.extend(_parse_system(msg.get("content"), f"{param}.content"))
        else:
            messages.append(Message(role, _parse_content(msg.get("content"), f"{param}.content")))

    stops = _opt(body, "stop_sequences", list)
    if stops is not None and not all(isinstance(x, str) for x in stops):
        raise _fail("stop_sequences", "must be a list of strings")
    tools = _opt(body, "tools", list)
    thinking = _opt(body, "thinking", dict)
    if thinking is not None and not isinstance(thinking.get("type"), str):
        raise _fail("thinking.type", "field required (a string)")
    user = _opt(_opt(body, "metadata", dict) or {}, "user_id", str, "metadata.user_id")
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        system=system,
        stream=bool(_opt(body, "stream", bool)),
        stop_sequences=list(stops) if stops is not None else None,
        temperature=_opt(body, "temperature", float),
        top_p=_opt(body, "top_p", float),
        top_k=_opt(body, "top_k", int),
        tools=[_parse_tool(t, f"tools.{j}") for j, t in enumerate(tools)] if tools is not None else None,
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        thinking=thinking,
        user=user,
        cache_control=_opt(body, "cache_control", dict),
        extra={k: v for k, v in body.items() if k not in _MODELLED},
        origin="anthropic",
    )


# --- canonical → wire ------------------------------------------------------------------------


def _with_cc(block: JSON, cache_control: JSON | None) -> JSON:
    if cache_control is not None:
        block["cache_control"] = cache_control
    return block


def _compact(blocks: list[JSON]) -> str | list[JSON]:
    """One plain text block → the string shorthand."""
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"} and blocks[0]["type"] == "text":
        return str(blocks[0]["text"])
    return blocks


def _block(part: Part) -> JSON | None:
    if isinstance(part, Text):
        if not part.text.strip():
            return None
        text: JSON = {"type": "text", "text": part.text}
        if part.citations is not None:
            text["citations"] = part.citations
        return _with_cc(text, part.cache_control)
    if isinstance(part, Image):
        source: JSON = {"type": "url", "url": part.url}
        if part.data is not None:
            source = {"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
        return _with_cc({"type": "image", "source": source}, part.cache_control)
    if isinstance(part, Document):
        doc: JSON = {"type": "document", "source": part.source, **part.extra}
        if part.title is not None or part.filename is not None:
            doc["title"] = part.title if part.title is not None else part.filename
        return _with_cc(doc, part.cache_control)
    if isinstance(part, ToolUse):
        return _with_cc(
            {"type": "tool_use", "id": part.id, "name": part.name, "input": part.input}, part.cache_control
        )
    if isinstance(part, ToolResult):
        result: JSON = {"type": "tool_result", "tool_use_id": part.tool_use_id}
        inner = [b for p in part.content if (b := _block(p)) is not None]
        if inner:
            result["content"] = _compact(inner)
        if part.is_error:
            result["is_error"] = True
        return _with_cc(result, part.cache_control)
    if isinstance(part, Thinking):
        if not part.signature or is_gateway_signature(part.signature):
            return None  # not Anthropic's: the API would reject the signature
        return {"type": "thinking", "thinking": part.thinking, "signature": part.signature}
    if isinstance(part, RedactedThinking):
        return {"type": "redacted_thinking", "data": part.data}
    if part.origin == "anthropic":
        return dict(part.raw)
    raise Unsupported(
        f"OpenAI content part of type {part.raw.get('type')!r} cannot be sent to an Anthropic upstream."
    )


def _messages(messages: list[Message]) -> list[JSON]:
    turns: list[tuple[str, list[JSON]]] = []
    for msg in messages:
        blocks = [b for p in msg.content if (b := _block(p)) is not None]
        if not blocks:
            continue
        if turns and turns[-1][0] == msg.role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((msg.role, blocks))
    out = []
    for role, blocks in turns:
        if role == "user":  # tool results first (stable), as the API demands
            blocks.sort(key=lambda b: b.get("type") != "tool_result")
        out.append({"role": role, "content": _compact(blocks)})
    return out


def _thinking_fits(messages: list[JSON]) -> bool:
    """With thinking on, a last assistant turn that called tools must open with a thinking block."""
    last = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    blocks = last if isinstance(last, list) else []
    calls = any(b.get("type") == "tool_use" for b in blocks)
    return not calls or blocks[0].get("type") in ("thinking", "redacted_thinking")


def _tool(tool: Tool) -> JSON:
    if tool.raw is not None:
        return dict(tool.raw)
    out: JSON = {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
    out = {k: v for k, v in out.items() if v is not None}
    if tool.strict is not None:
        out["strict"] = tool.strict
    return _with_cc(out, tool.cache_control)


def _output_format(response_format: JSON | None) -> JSON | None:
    if not response_format or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return {"type": "json_schema", "schema": schema if isinstance(schema, dict) else {"type": "object"}}


def build_request(req: ChatRequest, upstream_model: str, *, default_max_tokens: int = 4096) -> dict[str, Any]:
    """Canonical → Anthropic ``/v1/messages`` body for an Anthropic upstream."""
    # A client's own Anthropic fields survive; another format's never reach Anthropic.
    body: dict[str, Any] = dict(req.extra) if req.origin == "anthropic" else {}
    max_tokens = req.max_tokens if req.max_tokens is not None else default_max_tokens
    thinking, temperature, top_p, top_k = req.thinking, req.temperature, req.top_p, req.top_k
    messages = _messages(req.messages)
    budget = EFFORT_BUDGETS.get(req.reasoning_effort or "")
    if thinking is None and budget and _thinking_fits(messages):
        if req.max_tokens is None:
            max_tokens += budget
        else:
            budget = min(budget, max_tokens - 1)
        if budget >= 1024:
            thinking = {"type": "enabled", "budget_tokens": budget}
            temperature = top_p = top_k = None

    system = [t for t in req.system if t.text.strip()]
    if req.response_format and req.response_format.get("type") == "json_object":
        system.append(Text(JSON_OBJECT_INSTRUCTION))
    body["model"] = upstream_model
    body["max_tokens"] = max_tokens
    body["messages"] = messages
    if system:
        body["system"] = _compact([b for t in system if (b := _block(t)) is not None])
    if req.stop_sequences is not None:
        body["stop_sequences"] = list(req.stop_sequences)
    if req.stream:
        body["stream"] = True
    temperature = min(temperature, 1.0) if temperature is not None else None  # Anthropic: 0-1
    sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
    body.update({k: v for k, v in sampling.items() if v is not None})
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
        if (tc := req.tool_choice) is not None:
            dpt = tc.disable_parallel_tool_use
            choice = {"type": tc.type, "name": tc.name, "disable_parallel_tool_use": dpt}
            body["tool_choice"] = {k: v for k, v in choice.items() if v is not None}
    if thinking is not None:
        body["thinking"] = thinking
    if req.user is not None:
        body["metadata"] = {"user_id": req.user}
    if (fmt := _output_format(req.response_format)) is not None:
        config = body.get("output_config")
        body["output_config"] = {**(config if isinstance(config, dict) else {}), "format": fmt}
    if req.cache_control is not None:
        body["cache_control"] = req.cache_control
    return body
