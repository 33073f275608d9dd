"""Request translation of the OpenAI wire format, wire → canonical: parsing every part of a
Chat Completions request, the requests refused (and why), system and developer messages,
scalar fields, allowed tools, tool results and the legacy function role.

The other direction (canonical → OpenAI wire, and OpenAI requests built for an Anthropic
upstream) is in tests/test_translate_openai_build.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from claudestore.core.conversation import (
    Document,
    Image,
    Message,
    Text,
    Thinking,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
    Unknown,
)
from claudestore.core.errors import InvalidRequest
from claudestore.translate.openai import request as oreq
from tests.support.sdk_shapes import check_openai_body
from tests.support.translate_requests import RICH_OPENAI

# --- OpenAI wire → canonical --------------------------------------------------------------


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
