"""OpenAI ``/v1/chat/completions`` body ⇄ canonical ``ChatRequest`` (spec B.2, D.1).

Parsing: system/developer messages → system prompt; consecutive ``tool`` messages plus the
user content after them → one user message; ``reasoning_content`` → ``Thinking``; legacy
``functions``/``function_call``/``function`` messages → tools. Building (policies): limit
sent as ``max_tokens`` (vLLM/Ollama/llama.cpp; ``max_tokens_field`` for o-series); Thinking
→ ``reasoning_content`` only for OpenAI clients; tool results → one ``tool`` message each
(texts joined by newlines, ``is_error`` → ``"Error: "``), then one user message with their
images/PDFs and the turn's other content; ``thinking`` → ``reasoning_effort`` (budget < 4096
low, < 16384 medium, else high; adaptive → medium); Anthropic ``output_config.format`` →
``response_format``; cache_control dropped; streams always ask for usage.
"""

from __future__ import annotations

from typing import Any, Literal

from claudestore.core.conversation import (
    JSON,
    ChatRequest,
    Document,
    Image,
    Message,
    Part,
    Text,
    Thinking,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
    Unknown,
)
from claudestore.core.errors import InvalidRequest, Unsupported
from claudestore.translate.fields import typed
from claudestore.translate.openai.response import parse_arguments, tool_call

__all__ = ["build_request", "parse_data_url", "parse_request"]

_MODELLED = {"model", "messages", "max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "n"}
_MODELLED |= {"top_k", "seed", "user", "safety_identifier", "tools", "functions", "tool_choice", "stream"}
_MODELLED |= {"function_call", "parallel_tool_calls", "response_format", "reasoning_effort", "stream_options"}
_WHAT = {str: "a string", bool: "a boolean", list: "an array", dict: "an object", int: "an integer"}
_CHOICES: dict[str, Literal["auto", "none", "any"]] = {"auto": "auto", "none": "none", "required": "any"}
_WIRE_CHOICES = {"auto": "auto", "none": "none", "any": "required"}
_CANNOT = " cannot be sent to an OpenAI-compatible upstream."
_EMPTY_SCHEMA: JSON = {"type": "object", "properties": {}}


def _fail(param: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {problem}", param=param)


def _opt(obj: JSON, key: str, kind: type, param: str | None = None) -> Any:
    """``obj[key]`` if present and not null, checked to be a ``kind`` (float: any number)."""
    return typed(obj, key, kind, param or key, _fail, "expected", _WHAT)


def _req(obj: JSON, key: str, kind: type, param: str) -> Any:
    if obj.get(key) is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    return _opt(obj, key, kind, param)


def parse_data_url(url: str, param: str = "url") -> tuple[str, str] | None:
    """``data:<media type>;base64,<data>`` → (media type, data); None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise _fail(param, "only base64 data URLs are supported (data:<media type>;base64,<data>)")
    return header.removesuffix(";base64").split(";")[0] or "application/octet-stream", data


def _texts(content: Any, param: str, kinds: tuple[str, ...] = ("text",)) -> list[Text]:
    if content is None or isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise _fail(param, f"expected a string or an array of text parts, got {type(content).__name__}")
    out = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise _fail(f"{param}[{j}]", f"expected a part of type {' or '.join(map(repr, kinds))}")
        out.append(Text(_req(part, kind, str, f"{param}[{j}].{kind}")))
    return out


def _user_part(part: Any, param: str) -> Part:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return Text(_req(part, "text", str, f"{param}.text"))
    if kind == "image_url":
        url = _req(_req(part, "image_url", dict, f"{param}.image_url"), "url", str, f"{param}.image_url.url")
        parsed = parse_data_url(url, f"{param}.image_url.url")
        return Image(parsed[0], parsed[1]) if parsed else Image(url=url)
    if kind == "file":
        file = _req(part, "file", dict, f"{param}.file")
        if (data := _opt(file, "file_data", str, f"{param}.file.file_data")) is None:
            return Unknown("openai", part)  # a file_id: only an OpenAI upstream can resolve it
        media_type, b64 = parse_data_url(data, f"{param}.file.file_data") or ("application/pdf", data)
        source = {"type": "base64", "media_type": media_type, "data": b64}
        return Document(source, filename=_opt(file, "filename", str, f"{param}.file.filename"))
    if kind == "input_audio":  # only an OpenAI-format upstream can take audio
        return Unknown("openai", part)
    if not isinstance(kind, str):
        raise _fail(f"{param}.type", "expected a content part with a string 'type'")
    return Unknown("openai", part)


def _tool_use(call: Any, param: str) -> ToolUse:
    if not isinstance(call, dict):
        raise _fail(param, "expected a tool call object")
    fn = _req(call, "function", dict, f"{param}.function")
    arguments = _opt(fn, "arguments", str, f"{param}.function.arguments") or ""
    if (tool_input := parse_arguments(arguments)) is None:
        raise _fail(f"{param}.function.arguments", "expected a JSON object encoded as a string")
    name = _req(fn, "name", str, f"{param}.function.name")
    return ToolUse(_req(call, "id", str, f"{param}.id"), name, tool_input)


def _assistant(msg: JSON, param: str, index: int) -> Message:
    parts: list[Part] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(Thinking(reasoning))
    parts.extend(_texts(msg.get("content"), f"{param}.content", ("text", "refusal")))
    calls = _opt(msg, "tool_calls", list, f"{param}.tool_calls") or []
    parts.extend(
        _tool_use(call, f"{param}.tool_calls[{j}]")
        if not isinstance(call, dict) or call.get("type", "function") == "function"
        else Unknown("openai", call)  # a custom tool call: only an OpenAI-format upstream can take it
        for j, call in enumerate(calls)
    )
    if (legacy := _opt(msg, "function_call", dict, f"{param}.function_call")) is not None:
        parts.append(_tool_use({"id": f"call_legacy_{index}", "function": legacy}, f"{param}.function_call"))
    return Message("assistant", parts)


def _tool_result(msg: JSON, param: str, messages: list[Message], in_group: bool) -> ToolResult:
    content: list[Part] = [*_texts(msg.get("content"), f"{param}.content")]
    if msg.get("role") == "tool":
        return ToolResult(_req(msg, "tool_call_id", str, f"{param}.tool_call_id"), content)
    # Legacy ``function`` message: it answers the call of that name in the assistant turn just before.
    name = _req(msg, "name", str, f"{param}.name")
    group = messages[-1].content if in_group else []
    answered = {p.tool_use_id for p in group if isinstance(p, ToolResult)}
    if in_group:
        before = messages[-2] if len(messages) >= 2 else None
    else:
        before = messages[-1] if messages else None
    for part in before.content if before and before.role == "assistant" else []:
        if isinstance(part, ToolUse) and part.name == name and part.id not in answered:
            return ToolResult(part.id, content)
    hint = "; use role 'tool' with 'tool_call_id' instead"
    raise _fail(param, f"a 'function' message must directly follow the call of {name!r}{hint}")


def _tools(body: JSON, untranslatable: list[str]) -> list[Tool] | None:
    raw, key = _opt(body, "tools", list), "tools"
    if raw is None and _opt(body, "functions", list) is not None:  # legacy
        raw, key = [{"type": "function", "function": fn} for fn in body["functions"]], "functions"
    tools = []
    for j, tool in enumerate(raw or []):
        param = f"{key}[{j}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            untranslatable.append(
                f"{param}: tools of type {kind!r} can only be served by an OpenAI-format upstream."
            )
            continue
        fp = param if key == "functions" else f"{param}.function"
        fn = _req(tool, "function", dict, fp)
        name, desc = _req(fn, "name", str, f"{fp}.name"), _opt(fn, "description", str, f"{fp}.description")
        schema = _opt(fn, "parameters", dict, f"{fp}.parameters") or dict(_EMPTY_SCHEMA)
        tools.append(Tool(name, desc, schema, _opt(fn, "strict", bool, f"{fp}.strict")))
    return tools if raw is not None else None


def _tool_choice(body: JSON, tools: list[Tool] | None) -> tuple[ToolChoice | None, list[Tool] | None]:
    key = "tool_choice" if body.get("tool_choice") is not None else "function_call"
    value, choice = body.get(key), None
    kind = value.get("type") if isinstance(value, dict) else None
    if isinstance(value, str) and value in _CHOICES:
        choice = ToolChoice(_CHOICES[value])
    elif isinstance(value, dict) and (kind == "function" or key == "function_call"):
        fn = value if key == "function_call" else _req(value, "function", dict, f"{key}.function")
        choice = ToolChoice("tool", _req(fn, "name", str, f"{key}.function.name"))
    elif isinstance(value, dict) and kind == "allowed_tools":  # D.1 [policy]: filter the tools, keep the mode
        allowed = _req(value, "allowed_tools", dict, "tool_choice.allowed_tools")
        listed = [
            t.get("function")
            for t in _opt(allowed, "tools", list, f"{key}.allowed_tools.tools") or []
            if isinstance(t, dict)
        ]
        names = {fn.get("name") for fn in listed if isinstance(fn, dict)}
        tools = [t for t in tools or [] if t.name in names]
        choice = ToolChoice("any" if allowed.get("mode") == "required" else "auto")
    elif value is not None:
        raise _fail(key, "expected 'none', 'auto', 'required' or a function choice object")
    if (parallel := _opt(body, "parallel_tool_calls", bool)) is not None:
        choice = choice or ToolChoice("auto")
        choice.disable_parallel_tool_use = not parallel
    return choice, tools


def _conversation(raw_messages: list[Any]) -> tuple[list[Text], list[Message]]:
    system: list[Text] = []
    messages: list[Message] = []
    in_group = False  # messages[-1] is the user message collecting consecutive tool results
    for i, msg in enumerate(raw_messages):
        param = f"messages[{i}]"
        role = msg.get("role") if isinstance(msg, dict) else None
        if role in ("system", "developer"):
            system.extend(_texts(msg.get("content"), f"{param}.content"))
            continue
        if role == "assistant":
            messages.append(_assistant(msg, param, i))
            in_group = False
            continue
        if role in ("tool", "function"):
            parts: list[Part] = [_tool_result(msg, param, messages, in_group)]
        elif role == "user":
            content, cp = msg.get("content"), f"{param}.content"
            if not isinstance(content, list):
                content = [{"type": "text", "text": _req(msg, "content", str, cp)}]
            parts = [_user_part(p, f"{cp}[{j}]") for j, p in enumerate(content)]
        else:
            raise _fail(f"{param}.role", f"expected system, developer, user, assistant or tool, got {role!r}")
        if in_group:
            messages[-1].content.extend(parts)
        else:
            messages.append(Message("user", parts))
        in_group = role != "user"
    return system, messages


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """OpenAI ``/v1/chat/completions`` body → canonical. Raises ``InvalidRequest``/``Unsupported``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = _req(body, "model", str, "model")
    system, messages = _conversation(_req(body, "messages", list, "messages"))
    if (n := _opt(body, "n", int)) is not None and n != 1:
        raise _fail("n", "n must be 1; the gateway returns a single choice per request")
    mct = _opt(body, "max_completion_tokens", int)
    max_tokens = mct if mct is not None else _opt(body, "max_tokens", int)
    if max_tokens is not None and max_tokens < 1:
        raise _fail("max_completion_tokens" if mct is not None else "max_tokens", "expected an integer >= 1")
    stop = [body["stop"]] if isinstance(body.get("stop"), str) else _opt(body, "stop", list)
    if stop is not None and not all(isinstance(x, str) for x in stop):
        raise _fail("stop", "expected a string or an array of strings")
    untranslatable: list[str] = []
    tool_choice, tools = _tool_choice(body, _tools(body, untranslatable))
    stream_options = _opt(body, "stream_options", dict) or {}
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        system=system,
        stream=bool(_opt(body, "stream", bool)),
        stop_sequences=stop,
        temperature=_opt(body, "temperature", float),
        top_p=_opt(body, "top_p", float),
        top_k=_opt(body, "top_k", int),
        seed=_opt(body, "seed", int),
        tools=tools,
        tool_choice=tool_choice,
        reasoning_effort=_opt(body, "reasoning_effort", str),
        user=_opt(body, "user", str) or _opt(body, "safety_identifier", str),
        response_format=_opt(body, "response_format", dict),
        include_usage=bool(_opt(stream_options, "include_usage", bool, "stream_options.include_usage")),
        extra={k: v for k, v in body.items() if k not in _MODELLED},
        origin="openai",
        untranslatable=untranslatable,
    )


# --- canonical → wire ------------------------------------------------------------------------


def _content_part(part: Part, where: str) -> JSON | None:
    """A user (or tool-result) part → an OpenAI content part; None for what is not sent."""
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        url = part.url if part.data is None else f"data:{part.media_type or 'image/png'};base64,{part.data}"
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(part, Document):
        source, kind = part.source, part.source.get("type")
        if kind == "text" or (kind == "content" and isinstance(source.get("content"), str)):
            return {"type": "text", "text": str(source.get("data") or source.get("content") or "")}
        if kind == "base64":
            data_url = f"data:{source.get('media_type') or 'application/pdf'};base64,{source.get('data', '')}"
            name = part.filename or part.title or "document.pdf"
            return {"type": "file", "file": {"file_data": data_url, "filename": name}}
        raise Unsupported(f"A document with a {kind!r} source" + _CANNOT)
    if isinstance(part, Unknown):
        if part.origin == "openai":
            return dict(part.raw)
        raise Unsupported(f"Content of type {part.raw.get('type')!r}" + _CANNOT)
    if isinstance(part, Thinking | ToolUse | ToolResult):
        raise Unsupported(f"A {type(part).__name__} part in {where}" + _CANNOT)
    return None  # RedactedThinking


def _user_turn(msg: Message) -> list[JSON]:
    out: list[JSON] = []
    media: list[JSON] = []  # images/documents of tool results: they follow all tool messages
    own = [p for p in msg.content if not isinstance(p, ToolResult)]
    rest = [w for p in own if (w := _content_part(p, "a user turn")) is not None]
    for result in (p for p in msg.content if isinstance(p, ToolResult)):
        texts = []
        for wire in (w for p in result.content if (w := _content_part(p, "a tool result")) is not None):
            if wire["type"] == "text":
                texts.append(wire["text"])
            else:
                media.append(wire)
        text = "\n".join(texts)
        text = "Error: " + text if result.is_error else text
        out.append({"role": "tool", "tool_call_id": result.tool_use_id, "content": text})
    if parts := media + rest:
        only_text = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if only_text else parts})
    return out


def _assistant_turn(msg: Message, keep_reasoning: bool) -> list[JSON]:
    texts = [p.text for p in msg.content if isinstance(p, Text) and p.text]
    calls = [p for p in msg.content if isinstance(p, ToolUse)]
    reasoning = [p.thinking for p in msg.content if isinstance(p, Thinking) and keep_reasoning]
    for part in msg.content:
        if isinstance(part, Unknown | Image | Document | ToolResult):
            kind = part.raw.get("type") if isinstance(part, Unknown) else type(part).__name__
            raise Unsupported(f"Assistant content of type {kind!r}" + _CANNOT)
    wire: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        wire["tool_calls"] = [tool_call(c) for c in calls]
    if reasoning:
        wire["reasoning_content"] = "".join(reasoning)
    return [wire] if texts or calls or reasoning else []


def _tool(tool: Tool) -> JSON:
    if tool.raw is not None and tool.raw.get("type") not in (None, "custom"):
        raise Unsupported(f"Server tool {tool.name!r} ({tool.raw.get('type')})" + _CANNOT)
    schema = tool.input_schema or _EMPTY_SCHEMA
    fn = {"name": tool.name, "description": tool.description, "parameters": schema, "strict": tool.strict}
    return {"type": "function", "function": {k: v for k, v in fn.items() if v is not None}}


def _reasoning_effort(req: ChatRequest) -> str | None:
    thinking = req.thinking or {}
    if req.reasoning_effort is not None or thinking.get("type") not in ("enabled", "adaptive"):
        return req.reasoning_effort
    budget = thinking.get("budget_tokens") if thinking.get("type") == "enabled" else None
    if not isinstance(budget, int):
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _response_format(req: ChatRequest) -> JSON | None:
    if req.response_format is not None or req.origin != "anthropic":
        return req.response_format
    config = req.extra.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.get("schema") or {}}}
    return None


def build_request(
    req: ChatRequest,
    upstream_model: str,
    *,
    max_tokens_field: Literal["max_tokens", "max_completion_tokens", "both"] = "max_tokens",
) -> dict[str, Any]:
    """Canonical → OpenAI ``/v1/chat/completions`` body for an OpenAI-compatible upstream."""
    body: dict[str, Any] = dict(req.extra) if req.origin == "openai" else {}
    body["model"] = upstream_model
    messages: list[JSON] = []
    if system := "\n\n".join(t.text for t in req.system if t.text):
        messages.append({"role": "system", "content": system})
    for m in req.messages:
        messages.extend(_user_turn(m) if m.role == "user" else _assistant_turn(m, req.origin == "openai"))
    body["messages"] = messages
    if req.max_tokens is not None:
        both = max_tokens_field == "both"
        fields = ("max_tokens", "max_completion_tokens") if both else (max_tokens_field,)
        body.update(dict.fromkeys(fields, req.max_tokens))
    stop = list(req.stop_sequences) if req.stop_sequences else None
    simple: JSON = {"stop": stop, "temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k}
    simple.update(seed=req.seed, user=req.user)
    body.update({k: v for k, v in simple.items() if v is not None})
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
        if (tc := req.tool_choice) is not None:
            named = {"type": "function", "function": {"name": tc.name}}
            body["tool_choice"] = named if tc.type == "tool" else _WIRE_CHOICES[tc.type]
            if tc.disable_parallel_tool_use is not None:
                body["parallel_tool_calls"] = not tc.disable_parallel_tool_use
    if (effort := _reasoning_effort(req)) is not None:
        body["reasoning_effort"] = effort
    if (response_format := _response_format(req)) is not None:
        body["response_format"] = response_format
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
