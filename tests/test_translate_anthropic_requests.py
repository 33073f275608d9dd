"""Request translation of the Anthropic wire format, both directions (wire ⇄ canonical).

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
from tests.support.sdk_shapes import check_anthropic_body
from tests.support.translate_requests import RICH_ANTHROPIC, SIG, _anthropic_body, _creq

# --- Anthropic wire → canonical -----------------------------------------------------------


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
