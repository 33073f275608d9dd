"""Request translation, both wire formats, both directions (wire ⇄ canonical).

Bodies the translators write are checked against the official SDKs' request TypedDicts
(required keys present, no key the SDK does not know), recursively where practical.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import typing_extensions as te
from anthropic import types as at
from anthropic.types.message_create_params import MessageCreateParamsBase
from openai.types import chat as oc
from openai.types.chat.chat_completion_content_part_param import File as OpenAIFilePart
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.shared_params import FunctionDefinition

from claudestore.core.conversation import (
    ChatRequest,
    Document,
    Image,
    Message,
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
from claudestore.translate.anthropic import request as areq
from claudestore.translate.anthropic.response import mint_signature
from claudestore.translate.openai import request as oreq

# --- SDK shape checks ---------------------------------------------------------------------


def _keys(td: Any) -> tuple[set[str], set[str]]:
    hints = te.get_type_hints(td, include_extras=True)
    return {k for k, v in hints.items() if te.get_origin(v) is te.Required}, set(hints)


def assert_shape(obj: dict[str, Any], td: Any, also: set[str] | frozenset[str] = frozenset()) -> None:
    required, allowed = _keys(td)
    assert required <= obj.keys(), f"{td.__name__}: missing {required - obj.keys()} in {obj}"
    assert obj.keys() <= allowed | also, f"{td.__name__}: unknown {obj.keys() - allowed - also} in {obj}"


A_BLOCKS = {
    "text": at.TextBlockParam,
    "image": at.ImageBlockParam,
    "document": at.DocumentBlockParam,
    "tool_use": at.ToolUseBlockParam,
    "tool_result": at.ToolResultBlockParam,
    "thinking": at.ThinkingBlockParam,
    "redacted_thinking": at.RedactedThinkingBlockParam,
    "search_result": at.SearchResultBlockParam,
}
A_CHOICES = {
    "auto": at.ToolChoiceAutoParam,
    "any": at.ToolChoiceAnyParam,
    "tool": at.ToolChoiceToolParam,
    "none": at.ToolChoiceNoneParam,
}


def check_anthropic_body(body: dict[str, Any]) -> None:
    # temperature/top_p/top_k/stream are accepted by the API but absent from A2's base TypedDict.
    assert_shape(body, MessageCreateParamsBase, {"stream", "temperature", "top_p", "top_k"})

    def blocks(content: Any) -> None:
        for block in [] if isinstance(content, str) else content:
            assert_shape(block, A_BLOCKS[block["type"]])
            if block["type"] == "tool_result" and "content" in block:
                blocks(block["content"])

    for msg in body["messages"]:
        assert_shape(msg, {"user": at.UserMessageParam, "assistant": at.AssistantMessageParam}[msg["role"]])
        blocks(msg["content"])
    if isinstance(body.get("system"), list):
        blocks(body["system"])
    for tool in body.get("tools", []):
        if tool.get("type") in (None, "custom"):
            assert_shape(tool, at.ToolParam)
    if "tool_choice" in body:
        assert_shape(body["tool_choice"], A_CHOICES[body["tool_choice"]["type"]])
    if "metadata" in body:
        assert_shape(body["metadata"], at.MetadataParam)


O_MESSAGES = {
    "system": oc.ChatCompletionSystemMessageParam,
    "developer": oc.ChatCompletionDeveloperMessageParam,
    "user": oc.ChatCompletionUserMessageParam,
    "assistant": oc.ChatCompletionAssistantMessageParam,
    "tool": oc.ChatCompletionToolMessageParam,
}
O_PARTS = {
    "text": oc.ChatCompletionContentPartTextParam,
    "image_url": oc.ChatCompletionContentPartImageParam,
    "file": OpenAIFilePart,
    "input_audio": oc.ChatCompletionContentPartInputAudioParam,
}


def check_openai_body(body: dict[str, Any]) -> None:
    assert_shape(body, CompletionCreateParamsBase, {"stream", "top_k"})
    for msg in body["messages"]:
        # reasoning_content: the de-facto field of DeepSeek/vLLM (policy: OpenAI clients only)
        assert_shape(msg, O_MESSAGES[msg["role"]], {"reasoning_content"})
        if isinstance(msg.get("content"), list):
            for part in msg["content"]:
                assert_shape(part, O_PARTS[part["type"]])
        for call in msg.get("tool_calls", []):
            assert_shape(call, oc.ChatCompletionMessageFunctionToolCallParam)
            assert isinstance(call["function"]["arguments"], str)
    for tool in body.get("tools", []):
        assert_shape(tool, oc.ChatCompletionFunctionToolParam)
        assert_shape(tool["function"], FunctionDefinition)
    if "stream_options" in body:
        assert_shape(body["stream_options"], oc.ChatCompletionStreamOptionsParam)


# --- Anthropic wire → canonical -----------------------------------------------------------

SIG = "EqQBCkgIARABGAIiQL2xSignatureFromAnthropic=="

RICH_ANTHROPIC: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 2048,
    "system": [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Cite sources.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?", "cache_control": {"type": "ephemeral"}},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
                    "title": "Report",
                    "context": "Q3",
                    "citations": {"enabled": True},
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
                {
                    "type": "search_result",
                    "source": "https://s",
                    "title": "S",
                    "content": [{"type": "text", "text": "r"}],
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Let me look.", "signature": SIG},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                {"type": "text", "text": "Checking the weather."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A",
                    "content": "18C",
                    "cache_control": {"type": "ephemeral"},
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [
                        {"type": "text", "text": "clock broke"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
                        },
                    ],
                    "is_error": True,
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
        {"role": "assistant", "content": "Tomorrow"},
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "cache_control": {"type": "ephemeral"},
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}, "strict": True},
        {"type": "custom", "name": "lookup", "input_schema": {"type": "object"}, "defer_loading": True},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "user-42"},
    "stop_sequences": ["###"],
    "temperature": 0.7,
    "top_p": 0.95,
    "top_k": 40,
    "stream": True,
    "cache_control": {"type": "ephemeral"},
    "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
    "service_tier": "standard_only",
    "container": "container_01",
    "speed": "fast",
    "some_future_field": {"anything": [1, 2]},
}


def test_anthropic_rich_request_round_trips_exactly() -> None:
    body = copy.deepcopy(RICH_ANTHROPIC)
    req = areq.parse_request(body)
    assert body == RICH_ANTHROPIC  # parsing does not mutate the client's body
    assert req.origin == "anthropic"
    out = areq.build_request(req, "claude-sonnet-4-5")
    assert out == RICH_ANTHROPIC
    out.pop("some_future_field")  # unknown to the SDK by construction
    check_anthropic_body(out)


def test_anthropic_parse_models_every_part() -> None:
    req = areq.parse_request(copy.deepcopy(RICH_ANTHROPIC))
    assert [t.text for t in req.system] == ["You are terse.", "Cite sources."]
    assert req.system[1].cache_control == {"type": "ephemeral", "ttl": "1h"}
    user, assistant, results, prefill = req.messages
    text, b64, url, file_image, pdf, txt, search = user.content
    assert text == Text("What is in these?", {"type": "ephemeral"})
    assert b64 == Image("image/png", "iVBORw0KGgo=")
    assert url == Image(url="https://example.com/cat.jpg")
    assert isinstance(file_image, Unknown) and file_image.origin == "anthropic"
    assert (
        isinstance(pdf, Document)
        and pdf.title == "Report"
        and pdf.extra == {"context": "Q3", "citations": {"enabled": True}}
    )
    assert pdf.cache_control == {"type": "ephemeral"}
    assert isinstance(txt, Document) and txt.source["type"] == "text"
    assert isinstance(search, Unknown) and search.raw["type"] == "search_result"
    assert assistant.content[:2] == [
        Thinking("Let me look.", SIG),
        RedactedThinking("EmwKAhgBEgy3va3pzix/LafPsn4a"),
    ]
    assert assistant.content[3] == ToolUse("toolu_01A", "get_weather", {"city": "Paris"})
    first, second, after = results.content
    assert first == ToolResult("toolu_01A", [Text("18C")], False, {"type": "ephemeral"})
    assert isinstance(second, ToolResult) and second.is_error and isinstance(second.content[1], Image)
    assert after == Text("And tomorrow?")
    assert prefill.content == [Text("Tomorrow")]
    weather, time_, lookup, search_tool = req.tools or []
    assert weather.raw is None and weather.cache_control == {"type": "ephemeral"}
    assert time_.strict is True and time_.description is None
    assert lookup.raw is not None and lookup.input_schema == {"type": "object"}  # unmodelled keys kept
    assert search_tool.raw == {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    assert req.tool_choice == ToolChoice("auto", None, True)
    assert req.thinking == {"type": "enabled", "budget_tokens": 1024}
    assert (req.user, req.stop_sequences, req.temperature, req.top_p, req.top_k) == (
        "user-42",
        ["###"],
        0.7,
        0.95,
        40,
    )
    assert req.stream and req.cache_control == {"type": "ephemeral"}
    assert req.extra == {
        "output_config": RICH_ANTHROPIC["output_config"],
        "service_tier": "standard_only",
        "container": "container_01",
        "speed": "fast",
        "some_future_field": {"anything": [1, 2]},
    }


def test_anthropic_string_forms_and_system_role_hoisting() -> None:
    req = areq.parse_request(
        {
            "model": "m",
            "max_tokens": 0,  # 0 is allowed (cache pre-warm)
            "system": "Top.",
            "messages": [
                {"role": "system", "content": "Also system."},
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "Late system."}]},
            ],
        }
    )
    assert [t.text for t in req.system] == ["Top.", "Also system.", "Late system."]
    assert req.messages == [Message("user", [Text("hi")])]
    assert req.max_tokens == 0 and req.stream is False and req.extra == {}
    assert areq.build_request(req, "m")["system"] == [
        {"type": "text", "text": "Top."},
        {"type": "text", "text": "Also system."},
        {"type": "text", "text": "Late system."},
    ]


def _anthropic_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    for key, value in changes.items():
        if value is KeyError:
            body.pop(key)
        else:
            body[key] = value
    return body


def _msg(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


@pytest.mark.parametrize(
    ("changes", "param", "fragment"),
    [
        ({"model": KeyError}, "model", "model: field required"),
        ({"model": 5}, "model", "must be a string"),
        ({"max_tokens": KeyError}, "max_tokens", "max_tokens: field required"),
        ({"max_tokens": -1}, "max_tokens", "integer >= 0"),
        ({"max_tokens": "100"}, "max_tokens", "integer >= 0"),
        ({"max_tokens": True}, "max_tokens", "integer >= 0"),
        ({"messages": KeyError}, "messages", "field required"),
        ({"messages": {"role": "user"}}, "messages", "must be a list"),
        ({"messages": ["hi"]}, "messages.0", "role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role", "'tool'"),
        ({"messages": [{"role": "user"}]}, "messages.0.content", "field required"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "string or a list"),
        ({"messages": [{"role": "system", "content": 5}]}, "messages.0.content", "string or a list"),
        ({"messages": _msg("hi")}, "messages.0.content.0", "content block"),
        ({"messages": _msg({"text": "x"})}, "messages.0.content.0.type", "field required"),
        ({"messages": _msg({"type": "text", "text": 5})}, "messages.0.content.0.text", "must be a string"),
        (
            {"messages": _msg({"type": "text", "text": "x", "cache_control": "yes"})},
            "messages.0.content.0.cache_control",
            "object",
        ),
        ({"messages": _msg({"type": "image"})}, "messages.0.content.0.source", "field required"),
        (
            {"messages": _msg({"type": "image", "source": {"type": "base64", "data": "x"}})},
            "messages.0.content.0.source.media_type",
            "field required",
        ),
        (
            {"messages": _msg({"type": "tool_use", "id": "t", "name": "n"})},
            "messages.0.content.0.input",
            "field required",
        ),
        (
            {"messages": _msg({"type": "tool_result", "content": "x"})},
            "messages.0.content.0.tool_use_id",
            "field required",
        ),
        (
            {"messages": _msg({"type": "tool_result", "tool_use_id": "t", "content": 5})},
            "messages.0.content.0.content",
            "string or a list",
        ),
        (
            {"messages": _msg({"type": "tool_result", "tool_use_id": "t", "is_error": "no"})},
            "messages.0.content.0.is_error",
            "boolean",
        ),
        (
            {"messages": _msg({"type": "thinking", "signature": "s"})},
            "messages.0.content.0.thinking",
            "field required",
        ),
        ({"system": 5}, "system", "string or a list"),
        (
            {"system": [{"type": "image", "source": {"type": "url", "url": "u"}}]},
            "system.0.type",
            "only text blocks",
        ),
        ({"temperature": "hot"}, "temperature", "must be a number"),
        ({"top_p": True}, "top_p", "must be a number"),
        ({"top_k": 1.5}, "top_k", "integer"),
        ({"stream": "yes"}, "stream", "boolean"),
        ({"stop_sequences": "END"}, "stop_sequences", "list"),
        ({"stop_sequences": ["a", 1]}, "stop_sequences", "list of strings"),
        ({"tools": {"name": "x"}}, "tools", "list"),
        ({"tools": [{"name": "x"}]}, "tools.0.input_schema", "field required"),
        ({"tools": [{"input_schema": {}}]}, "tools.0.name", "field required"),
        ({"tool_choice": {"type": "bogus"}}, "tool_choice.type", "must be one of"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name", "field required"),
        ({"thinking": "on"}, "thinking", "object"),
        ({"thinking": {"budget_tokens": 2000}}, "thinking.type", "field required"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id", "string"),
        ({"cache_control": "on"}, "cache_control", "object"),
    ],
)
def test_anthropic_parse_rejects_wrong_types(changes: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        areq.parse_request(_anthropic_body(**changes))
    assert info.value.param == param
    assert info.value.message.startswith(f"{param}: ")
    assert fragment in info.value.message
    assert info.value.status == 400


def test_anthropic_parse_accepts_unknown_blocks_and_nulls() -> None:
    raw = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"q": "x"}}
    req = areq.parse_request(
        _anthropic_body(
            messages=[{"role": "assistant", "content": [raw]}],
            temperature=None,
            metadata={"user_id": None},
            system=None,
            tools=None,
        )
    )
    assert req.messages[0].content == [Unknown("anthropic", raw)]
    assert req.temperature is None and req.user is None and req.system == [] and req.tools is None


# --- canonical → Anthropic wire -----------------------------------------------------------


def _creq(messages: list[Message], **fields: Any) -> ChatRequest:
    return ChatRequest(
        model="client-model", messages=messages, max_tokens=fields.pop("max_tokens", 100), **fields
    )


def test_anthropic_build_cleans_up_conversation() -> None:
    req = _creq(
        [
            Message("user", [Text(""), Text("  \n"), Text("one")]),
            Message("user", [Text("two", {"type": "ephemeral"})]),
            Message("assistant", [Text("")]),  # becomes empty → dropped, so the users merge
            Message("user", [Text("three")]),
            Message("assistant", [Thinking("gw", mint_signature("gw")), Thinking("bare"), Text("ok")]),
            Message("assistant", [ToolUse("toolu_1", "f", {})]),
            Message("user", [Text("see"), ToolResult("toolu_1", [Text("")]), Image("image/png", "AAA")]),
        ]
    )
    body = areq.build_request(req, "claude-up")
    assert body["model"] == "claude-up"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one"},
                {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "three"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "ok"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1"},
                {"type": "text", "text": "see"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
            ],
        },
    ]
    check_anthropic_body(body)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": None}, {"max_tokens": 4096}),
        ({"max_tokens": 50}, {"max_tokens": 50}),
        ({"temperature": 1.7, "top_p": 0.5, "top_k": 3}, {"temperature": 1.0, "top_p": 0.5, "top_k": 3}),
        ({"temperature": 0.2}, {"temperature": 0.2}),
        ({"seed": 7, "include_usage": True}, {}),  # no Anthropic counterpart
        ({"stream": True}, {"stream": True}),
        ({"stop_sequences": ["x", "y"]}, {"stop_sequences": ["x", "y"]}),
        ({"user": "u"}, {"metadata": {"user_id": "u"}}),
        ({"cache_control": {"type": "ephemeral"}}, {"cache_control": {"type": "ephemeral"}}),
        ({"thinking": {"type": "adaptive"}}, {"thinking": {"type": "adaptive"}}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object", "properties": {}}},
                }
            },
            {
                "output_config": {
                    "format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}
                }
            },
        ),
        ({"response_format": {"type": "text"}}, {}),
        # reasoning_effort → thinking budget, only when thinking is unset [policy]
        (
            {"max_tokens": None, "reasoning_effort": "low", "temperature": 0.3},
            {"max_tokens": 4096 + 2048, "thinking": {"type": "enabled", "budget_tokens": 2048}},
        ),
        (
            {"max_tokens": 20000, "reasoning_effort": "high"},
            {"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": 16384}},
        ),
        (
            {"max_tokens": 5000, "reasoning_effort": "high", "top_k": 5},
            {"max_tokens": 5000, "thinking": {"type": "enabled", "budget_tokens": 4999}},
        ),
        (
            {"max_tokens": 900, "reasoning_effort": "medium", "top_k": 5},
            {"max_tokens": 900, "top_k": 5},
        ),  # no room
        ({"reasoning_effort": "none"}, {}),
        ({"reasoning_effort": "high", "thinking": {"type": "disabled"}}, {"thinking": {"type": "disabled"}}),
    ],
)
def test_anthropic_build_scalar_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    req = _creq([Message("user", [Text("hi")])], origin="openai", **fields)
    body = areq.build_request(req, "claude-up")
    rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
    assert rest == {"max_tokens": 100, **expected}
    check_anthropic_body(body)


def test_anthropic_build_default_max_tokens_keyword_and_json_object() -> None:
    req = _creq(
        [Message("user", [Text("hi")])],
        max_tokens=None,
        system=[Text("Be brief.")],
        response_format={"type": "json_object"},
        origin="openai",
    )
    body = areq.build_request(req, "claude-up", default_max_tokens=777)
    assert body["max_tokens"] == 777
    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": areq.JSON_OBJECT_INSTRUCTION},
    ]


def test_anthropic_build_extra_only_for_anthropic_clients_and_output_config_merge() -> None:
    extra = {"service_tier": "auto", "output_config": {"effort": "low"}}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}
    mine = areq.build_request(_creq([Message("user", [Text("x")])], extra=extra, response_format=fmt), "c")
    assert mine["service_tier"] == "auto"
    assert mine["output_config"] == {
        "effort": "low",
        "format": {"type": "json_schema", "schema": {"type": "object"}},
    }
    theirs = areq.build_request(
        _creq([Message("user", [Text("x")])], extra={"logit_bias": {}}, origin="openai"), "c"
    )
    assert "logit_bias" not in theirs and "service_tier" not in theirs


def test_anthropic_build_tools_and_choice() -> None:
    tools = [
        Tool("f", "does f", {"type": "object", "properties": {}}, strict=False),
        Tool("g", None, {"type": "object"}),
    ]
    req = _creq([Message("user", [Text("x")])], tools=tools, tool_choice=ToolChoice("tool", "g", True))
    body = areq.build_request(req, "c")
    assert body["tools"] == [
        {
            "name": "f",
            "description": "does f",
            "input_schema": {"type": "object", "properties": {}},
            "strict": False,
        },
        {"name": "g", "input_schema": {"type": "object"}},
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "g", "disable_parallel_tool_use": True}
    no_tools = areq.build_request(
        _creq([Message("user", [Text("x")])], tool_choice=ToolChoice("auto", None, True)), "c"
    )
    assert "tool_choice" not in no_tools  # the API refuses tool_choice without tools
    check_anthropic_body(body)


@pytest.mark.parametrize(
    ("origin", "part", "outcome"),
    [
        (
            "anthropic",
            Unknown("anthropic", {"type": "search_result", "source": "s"}),
            {"type": "search_result", "source": "s"},
        ),
        ("openai", Unknown("openai", {"type": "input_audio", "input_audio": {}}), "'input_audio'"),
        ("openai", Unknown("openai", {"type": "file", "file": {"file_id": "file-1"}}), "'file'"),
    ],
)
def test_anthropic_build_unknown_parts(origin: str, part: Unknown, outcome: Any) -> None:
    req = _creq([Message("user", [Text("x"), part])], origin=origin)
    if isinstance(outcome, str):
        with pytest.raises(Unsupported, match=outcome):
            areq.build_request(req, "c")
    else:
        assert areq.build_request(req, "c")["messages"][0]["content"][1] == outcome


def test_anthropic_build_document_title_from_filename() -> None:
    doc = Document({"type": "base64", "media_type": "application/pdf", "data": "JVB"}, filename="r.pdf")
    body = areq.build_request(_creq([Message("user", [doc])], origin="openai"), "c")
    assert body["messages"][0]["content"] == [{"type": "document", "source": doc.source, "title": "r.pdf"}]


# --- OpenAI wire → canonical --------------------------------------------------------------

RICH_OPENAI: dict[str, Any] = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "system", "content": "You are terse.\n\nCite sources."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "r.pdf"},
                },
                {"type": "file", "file": {"file_id": "file-abc"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "reasoning_content": "Need the weather.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "user", "content": "And tomorrow?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_3",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris","day":1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "20C"},
    ],
    "max_tokens": 512,
    "stop": ["###", "END"],
    "temperature": 1.4,
    "top_p": 0.9,
    "top_k": 20,
    "seed": 11,
    "user": "user-42",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    },
    "reasoning_effort": "medium",
    "stream": True,
    "stream_options": {"include_usage": True},
    "logprobs": True,
    "frequency_penalty": 0.5,
    "metadata": {"k": "v"},
    "prompt_cache_key": "pck",
    "some_future_field": [1],
}


def test_openai_rich_request_round_trips_exactly() -> None:
    body = copy.deepcopy(RICH_OPENAI)
    req = oreq.parse_request(body)
    assert body == RICH_OPENAI
    assert req.origin == "openai"
    out = oreq.build_request(req, "gpt-4.1")
    assert out == RICH_OPENAI
    out.pop("some_future_field")  # unknown to the SDK by construction
    check_openai_body(out)


def test_openai_parse_models_every_part() -> None:
    req = oreq.parse_request(copy.deepcopy(RICH_OPENAI))
    assert req.system == [Text("You are terse.\n\nCite sources.")]
    user, assistant, results, assistant2, results2 = req.messages
    text, b64, url, pdf, file_id = user.content
    assert text == Text("What is in these?")
    assert b64 == Image("image/png", "iVBORw0KGgo=")
    assert url == Image(url="https://example.com/cat.jpg")
    assert pdf == Document(
        {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, filename="r.pdf"
    )
    assert file_id == Unknown("openai", {"type": "file", "file": {"file_id": "file-abc"}})
    assert assistant.content == [
        Thinking("Need the weather."),
        Text("Checking."),
        ToolUse("call_1", "get_weather", {"city": "Paris"}),
        ToolUse("call_2", "get_time", {}),
    ]
    # consecutive tool messages and the user text after them: ONE user message
    assert results == Message(
        "user",
        [ToolResult("call_1", [Text("18C")]), ToolResult("call_2", [Text("noon")]), Text("And tomorrow?")],
    )
    assert assistant2.content == [ToolUse("call_3", "get_weather", {"city": "Paris", "day": 1})]
    assert results2 == Message("user", [ToolResult("call_3", [Text("20C")])])
    assert (req.max_tokens, req.stop_sequences, req.temperature, req.top_p, req.top_k, req.seed) == (
        512,
        ["###", "END"],
        1.4,
        0.9,
        20,
        11,
    )
    assert req.user == "user-42" and req.reasoning_effort == "medium"
    assert req.tool_choice == ToolChoice("any", None, True)
    assert [t.name for t in req.tools or []] == ["get_weather", "get_time"]
    assert (req.tools or [])[0].strict is True and (req.tools or [])[1].description is None
    assert req.response_format == RICH_OPENAI["response_format"]
    assert req.stream and req.include_usage
    assert req.extra == {
        "logprobs": True,
        "frequency_penalty": 0.5,
        "metadata": {"k": "v"},
        "prompt_cache_key": "pck",
        "some_future_field": [1],
    }


def _openai_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for key, value in changes.items():
        if value is KeyError:
            body.pop(key)
        else:
            body[key] = value
    return body


def _umsg(*parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def _call(arguments: str) -> list[dict[str, Any]]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [call]}]


@pytest.mark.parametrize(
    ("changes", "param", "fragment", "error"),
    [
        ({"model": KeyError}, "model", "Missing required parameter: 'model'", InvalidRequest),
        ({"model": 3}, "model", "expected a string", InvalidRequest),
        ({"messages": KeyError}, "messages", "Missing required parameter", InvalidRequest),
        ({"messages": "hi"}, "messages", "expected an array", InvalidRequest),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "'bot'", InvalidRequest),
        (
            {"messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "expected a string",
            InvalidRequest,
        ),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "Missing required", InvalidRequest),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
            "type 'text'",
            InvalidRequest,
        ),
        (
            {"messages": _umsg({"type": "text"})},
            "messages[0].content[0].text",
            "Missing required",
            InvalidRequest,
        ),
        (
            {"messages": _umsg({"type": "image_url", "image_url": {}})},
            "messages[0].content[0].image_url.url",
            "Missing",
            InvalidRequest,
        ),
        (
            {"messages": _umsg({"type": "image_url", "image_url": {"url": "data:image/png,abc"}})},
            "messages[0].content[0].image_url.url",
            "base64",
            InvalidRequest,
        ),
        (
            {"messages": _umsg({"text": "no type"})},
            "messages[0].content[0].type",
            "string 'type'",
            InvalidRequest,
        ),
        (
            {"messages": _call("{not json")},
            "messages[1].tool_calls[0].function.arguments",
            "JSON object",
            InvalidRequest,
        ),
        (
            {"messages": _call("[1, 2]")},
            "messages[1].tool_calls[0].function.arguments",
            "JSON object",
            InvalidRequest,
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "Missing required",
            InvalidRequest,
        ),
        (
            {"messages": [{"role": "function", "name": "f", "content": "x"}]},
            "messages[0]",
            "must directly follow",
            InvalidRequest,
        ),
        ({"n": 2}, "n", "n must be 1", InvalidRequest),
        ({"max_tokens": "10"}, "max_tokens", "expected an integer", InvalidRequest),
        ({"max_completion_tokens": 0}, "max_completion_tokens", ">= 1", InvalidRequest),
        ({"stop": 5}, "stop", "expected an array", InvalidRequest),
        ({"stop": ["a", 2]}, "stop", "array of strings", InvalidRequest),
        ({"temperature": "warm"}, "temperature", "expected a number", InvalidRequest),
        ({"seed": 1.5}, "seed", "integer", InvalidRequest),
        ({"stream": 1}, "stream", "boolean", InvalidRequest),
        (
            {"tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name",
            "Missing",
            InvalidRequest,
        ),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "Missing", InvalidRequest),
        ({"tool_choice": "sometimes"}, "tool_choice", "expected 'none'", InvalidRequest),
        (
            {"tool_choice": {"type": "custom", "custom": {"name": "x"}}},
            "tool_choice",
            "expected 'none'",
            InvalidRequest,
        ),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls", "boolean", InvalidRequest),
        (
            {"stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
            "boolean",
            InvalidRequest,
        ),
    ],
)
def test_openai_parse_rejects(
    changes: dict[str, Any], param: str, fragment: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        oreq.parse_request(_openai_body(**changes))
    assert isinstance(info.value, InvalidRequest)
    assert info.value.param == param
    assert fragment in info.value.message


def test_openai_system_and_developer_messages_anywhere() -> None:
    req = oreq.parse_request(
        _openai_body(
            messages=[
                {"role": "developer", "content": "Dev."},
                {"role": "user", "content": "hi"},
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "Sys."}, {"type": "text", "text": "More."}],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}],
                },
            ]
        )
    )
    assert [t.text for t in req.system] == ["Dev.", "Sys.", "More."]
    assert req.messages == [Message("user", [Text("hi")]), Message("assistant", [Text("a"), Text("no")])]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"max_tokens": None, "stop_sequences": None, "user": None, "tool_choice": None}),
        ({"max_tokens": 100}, {"max_tokens": 100}),
        ({"max_completion_tokens": 200, "max_tokens": 100}, {"max_tokens": 200}),
        ({"max_completion_tokens": None, "max_tokens": 100}, {"max_tokens": 100}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": None}, {"stop_sequences": None}),
        ({"safety_identifier": "sid"}, {"user": "sid"}),
        ({"user": "u", "safety_identifier": "sid"}, {"user": "u"}),
        ({"n": 1}, {"extra": {}}),
        ({"stream": True}, {"stream": True, "include_usage": False}),
        ({"stream": True, "stream_options": {"include_usage": True}}, {"include_usage": True}),
        ({"reasoning_effort": "high"}, {"reasoning_effort": "high"}),
        ({"response_format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}}),
        ({"tool_choice": "auto"}, {"tool_choice": ToolChoice("auto")}),
        ({"tool_choice": "none"}, {"tool_choice": ToolChoice("none")}),
        ({"tool_choice": "required"}, {"tool_choice": ToolChoice("any")}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            {"tool_choice": ToolChoice("tool", "f")},
        ),
        ({"parallel_tool_calls": False}, {"tool_choice": ToolChoice("auto", None, True)}),
        (
            {"tool_choice": "required", "parallel_tool_calls": True},
            {"tool_choice": ToolChoice("any", None, False)},
        ),
        ({"function_call": {"name": "f"}}, {"tool_choice": ToolChoice("tool", "f")}),
        ({"function_call": "none"}, {"tool_choice": ToolChoice("none")}),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            {"tools": [Tool("f", None, {"type": "object", "properties": {}})]},
        ),
        (
            {"functions": [{"name": "f", "description": "d"}]},
            {"tools": [Tool("f", "d", {"type": "object", "properties": {}})]},
        ),
    ],
)
def test_openai_parse_fields(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    req = oreq.parse_request(_openai_body(**changes))
    for field, value in expected.items():
        assert getattr(req, field) == value, field


def test_openai_allowed_tools_filters_tools() -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b", "c")]
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "b"}}]},
    }
    req = oreq.parse_request(_openai_body(tools=tools, tool_choice=choice))
    assert [t.name for t in req.tools or []] == ["b"] and req.tool_choice == ToolChoice("any")


def test_openai_tool_then_user_content_and_legacy_function_role() -> None:
    req = oreq.parse_request(
        _openai_body(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "get", "arguments": '{"c":1}'},
                },
                {"role": "function", "name": "get", "content": "sunny"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "thanks"},
                        {"type": "image_url", "image_url": {"url": "https://i"}},
                    ],
                },
                {"role": "user", "content": "and?"},
            ]
        )
    )
    call = ToolUse("call_legacy_1", "get", {"c": 1})
    assert req.messages == [
        Message("user", [Text("weather?")]),
        Message("assistant", [call]),
        Message(
            "user", [ToolResult("call_legacy_1", [Text("sunny")]), Text("thanks"), Image(url="https://i")]
        ),
        Message("user", [Text("and?")]),
    ]
    # a function message may also answer a modern tool call of that name
    req2 = oreq.parse_request(
        _openai_body(messages=[_call("{}")[1], {"role": "function", "name": "f", "content": None}])
    )
    assert req2.messages[1] == Message("user", [ToolResult("c1", [])])


# --- canonical → OpenAI wire --------------------------------------------------------------


def test_openai_build_from_anthropic_request() -> None:
    req = areq.parse_request(copy.deepcopy(RICH_ANTHROPIC))
    req.tools = (req.tools or [])[:3]  # the server tool cannot go to OpenAI (tested below)
    req.messages[0].content = [p for p in req.messages[0].content if not isinstance(p, Unknown)]
    body = oreq.build_request(req, "qwen3")
    check_openai_body(body)
    assert body["model"] == "qwen3"
    assert body["messages"] == [
        {"role": "system", "content": "You are terse.\n\nCite sources."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "Report"},
                },
                {"type": "text", "text": "plain"},
            ],
        },
        {
            "role": "assistant",  # thinking and redacted thinking dropped (client spoke Anthropic)
            "content": "Checking the weather.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: clock broke"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
        {"role": "assistant", "content": "Tomorrow"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": RICH_ANTHROPIC["tools"][0]["input_schema"],
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
    ]
    rest = {k: v for k, v in body.items() if k not in ("model", "messages", "tools")}
    assert rest == {
        "max_tokens": 2048,
        "stop": ["###"],
        "temperature": 0.7,
        "top_p": 0.95,
        "top_k": 40,
        "user": "user-42",
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "low",  # thinking budget 1024
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": {"type": "object"}},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "cache_control" not in repr(body)  # dropped everywhere
    assert "service_tier" not in body  # extra of another format is never forwarded


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (Unknown("anthropic", {"type": "search_result"}), "'search_result'"),
        (Document({"type": "url", "url": "https://x.pdf"}), "'url' source"),
        (ToolUse("t", "f", {}), "ToolUse part in a user turn"),
    ],
)
def test_openai_build_unsupported_user_parts(part: Any, message: str) -> None:
    with pytest.raises(Unsupported, match=message):
        oreq.build_request(_creq([Message("user", [part])]), "m")


def test_openai_build_rejects_server_tools() -> None:
    req = areq.parse_request(_anthropic_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    with pytest.raises(Unsupported, match="Server tool 'web_search'"):
        oreq.build_request(req, "m")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"max_tokens": 100}),
        ({"max_tokens": None}, {}),
        ({"stream": True}, {"max_tokens": 100, "stream": True, "stream_options": {"include_usage": True}}),
        (
            {"stream": True, "include_usage": False},
            {"max_tokens": 100, "stream": True, "stream_options": {"include_usage": True}},
        ),
        ({"stop_sequences": []}, {"max_tokens": 100}),
        ({"seed": 3, "top_k": 0}, {"max_tokens": 100, "seed": 3, "top_k": 0}),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2000}},
            {"max_tokens": 100, "reasoning_effort": "low"},
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 8000}},
            {"max_tokens": 100, "reasoning_effort": "medium"},
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 32000}},
            {"max_tokens": 100, "reasoning_effort": "high"},
        ),
        ({"thinking": {"type": "adaptive"}}, {"max_tokens": 100, "reasoning_effort": "medium"}),
        ({"thinking": {"type": "disabled"}}, {"max_tokens": 100}),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 32000}, "reasoning_effort": "minimal"},
            {"max_tokens": 100, "reasoning_effort": "minimal"},
        ),
        ({"tool_choice": ToolChoice("auto")}, {"max_tokens": 100}),  # no tools → no tool_choice
        ({"cache_control": {"type": "ephemeral"}}, {"max_tokens": 100}),
    ],
)
def test_openai_build_scalar_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = oreq.build_request(_creq([Message("user", [Text("hi")])], **fields), "m")
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == expected
    check_openai_body(body)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("max_tokens", {"max_tokens": 100}),
        ("max_completion_tokens", {"max_completion_tokens": 100}),
        ("both", {"max_tokens": 100, "max_completion_tokens": 100}),
    ],
)
def test_openai_build_max_tokens_field(field: Any, expected: dict[str, Any]) -> None:
    body = oreq.build_request(_creq([Message("user", [Text("hi")])]), "m", max_tokens_field=field)
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), {"tool_choice": "auto"}),
        (ToolChoice("any"), {"tool_choice": "required"}),
        (ToolChoice("none"), {"tool_choice": "none"}),
        (ToolChoice("tool", "f"), {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
        (ToolChoice("auto", None, True), {"tool_choice": "auto", "parallel_tool_calls": False}),
        (ToolChoice("any", None, False), {"tool_choice": "required", "parallel_tool_calls": True}),
    ],
)
def test_openai_build_tool_choice(choice: ToolChoice, expected: dict[str, Any]) -> None:
    req = _creq([Message("user", [Text("hi")])], tools=[Tool("f", None, {})], tool_choice=choice)
    body = oreq.build_request(req, "m")
    assert body["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]
    assert {k: v for k, v in body.items() if k in ("tool_choice", "parallel_tool_calls")} == expected


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("openai", {"role": "assistant", "content": "hi", "reasoning_content": "think"}),
        ("anthropic", {"role": "assistant", "content": "hi"}),
    ],
)
def test_openai_build_thinking_policy(origin: str, expected: dict[str, Any]) -> None:
    turn = Message("assistant", [Thinking("think", "sig"), RedactedThinking("x"), Text("h"), Text("i")])
    body = oreq.build_request(_creq([Message("user", [Text("q")]), turn], origin=origin), "m")
    assert body["messages"][1] == expected


def test_openai_build_assistant_edge_cases_and_raw_arguments() -> None:
    messages = [
        Message("user", [Text("q")]),
        Message("assistant", [RedactedThinking("x")]),  # nothing left → not sent
        Message(
            "assistant", [ToolUse("call_9", "f", {"_raw": "{broken"}), ToolUse("call_8", "g", {"é": [1, 2]})]
        ),
        Message(
            "user",
            [
                ToolResult(
                    "call_9",
                    [Document({"type": "text", "media_type": "text/plain", "data": "doc"}), Text("more")],
                )
            ],
        ),
    ]
    body = oreq.build_request(_creq(messages), "m")
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{broken"}},
                {"id": "call_8", "type": "function", "function": {"name": "g", "arguments": '{"é":[1,2]}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "doc\nmore"},
    ]


def test_openai_build_extra_only_for_openai_clients() -> None:
    assert (
        oreq.build_request(
            _creq([Message("user", [Text("x")])], extra={"logprobs": True}, origin="openai"), "m"
        )["logprobs"]
        is True
    )
    assert "speed" not in oreq.build_request(
        _creq([Message("user", [Text("x")])], extra={"speed": "fast"}), "m"
    )


def test_cross_format_bodies_validate_against_sdk_types() -> None:
    openai_req = oreq.parse_request(copy.deepcopy(RICH_OPENAI))
    openai_req.messages[0].content = [p for p in openai_req.messages[0].content if not isinstance(p, Unknown)]
    anthropic_body = areq.build_request(openai_req, "claude")
    check_anthropic_body(anthropic_body)
    assert "logprobs" not in anthropic_body and anthropic_body["temperature"] == 1.0
    assert anthropic_body["messages"][1]["content"][0] == {
        "type": "text",
        "text": "Checking.",
    }  # unsigned thinking stripped
    assert anthropic_body["messages"][2]["content"][2] == {"type": "text", "text": "And tomorrow?"}
    assert anthropic_body["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }
    assert anthropic_body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert anthropic_body["messages"][0]["content"][3]["title"] == "r.pdf"


@pytest.mark.parametrize(
    ("assistant", "thinking"),
    [
        ([Text("plain")], True),
        (
            [ToolUse("toolu_1", "f", {})],
            False,
        ),  # API: "a final assistant message must start with a thinking block"
        (
            [Thinking("t", mint_signature("t")), ToolUse("toolu_1", "f", {})],
            False,
        ),  # gateway block is stripped
        ([Thinking("t", SIG), ToolUse("toolu_1", "f", {})], True),
        ([RedactedThinking("r"), ToolUse("toolu_1", "f", {})], True),
    ],
)
def test_anthropic_build_effort_thinking_only_when_the_tool_loop_allows(
    assistant: list[Any], thinking: bool
) -> None:
    messages = [Message("user", [Text("q")]), Message("assistant", assistant)]
    if any(isinstance(p, ToolUse) for p in assistant):
        messages.append(Message("user", [ToolResult("toolu_1", [Text("r")])]))
    body = areq.build_request(
        _creq(messages, max_tokens=None, reasoning_effort="medium", origin="openai"), "c"
    )
    assert ("thinking" in body) is thinking
    assert body["max_tokens"] == (4096 + 8192 if thinking else 4096)


def test_openai_only_features_parse_for_pass_through_and_refuse_translation() -> None:
    """Audio, custom tools and custom tool calls reach an OpenAI-format upstream untouched,
    and are refused (not dropped) when the request must become an Anthropic one."""
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
            },
            {"role": "assistant", "tool_calls": [{"type": "custom", "id": "c", "custom": {"name": "g"}}]},
            {"role": "user", "content": "next"},
        ],
        "tools": [{"type": "custom", "custom": {"name": "g"}}],
    }
    req = oreq.parse_request(body)
    assert req.untranslatable == [
        "tools[0]: tools of type 'custom' can only be served by an OpenAI-format upstream."
    ]
    assert req.messages[0].content == [Unknown("openai", body["messages"][0]["content"][0])]
    assert req.messages[1].content == [Unknown("openai", body["messages"][1]["tool_calls"][0])]
    with pytest.raises(Unsupported, match="input_audio"):
        areq.build_request(req, "claude-x")
