"""Request translation of the OpenAI wire format, canonical → wire: Chat Completions bodies
built from canonical requests (parts, scalar fields, max-tokens field, tool choice, thinking
policy, assistant edge cases, extras), and OpenAI requests built for an Anthropic upstream.

Bodies the translators write are checked against the official SDK's request TypedDicts
(tests/support/sdk_shapes.py). The other direction (wire → canonical) is in
tests/test_translate_openai_parse.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from claudestore.core.conversation import (
    Document,
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
from claudestore.core.errors import Unsupported
from claudestore.translate.anthropic import request as areq
from claudestore.translate.anthropic.response import mint_signature
from claudestore.translate.openai import request as oreq
from tests.support.sdk_shapes import check_anthropic_body, check_openai_body
from tests.support.translate_requests import RICH_ANTHROPIC, RICH_OPENAI, SIG, _anthropic_body, _creq

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
