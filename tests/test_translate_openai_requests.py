"""Request translation of the OpenAI wire format, both directions (wire ⇄ canonical).

Bodies the translators write are checked against the official SDK's request TypedDicts
(tests/support/sdk_shapes.py).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from claudestore.core.conversation import (
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
from tests.support.sdk_shapes import check_anthropic_body, check_openai_body
from tests.support.translate_requests import RICH_ANTHROPIC, SIG, _anthropic_body, _creq

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
