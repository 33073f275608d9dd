"""Non-streaming response translation, both wire formats, both directions.

Rendered bodies are validated by the official SDKs' response models
(``anthropic.types.Message`` / ``openai.types.chat.ChatCompletion``): a missing required
field or a wrong literal fails validation.
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import openai
import pytest

from claudestore.core.conversation import (
    Image,
    RedactedThinking,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    Unknown,
)
from claudestore.core.errors import InternalError
from claudestore.core.response import ChatResponse, Usage
from claudestore.translate.anthropic import response as aresp
from claudestore.translate.openai import response as oresp

SIG = "EqQBCkgIARABGAIiQL2xSignatureFromAnthropic=="


def validate_anthropic(body: dict[str, Any]) -> anthropic.types.Message:
    message = anthropic.types.Message.model_validate(body)
    assert message.type == "message" and message.role == "assistant"
    return message


def validate_openai(body: dict[str, Any]) -> openai.types.chat.ChatCompletion:
    completion = openai.types.chat.ChatCompletion.model_validate(body)
    assert completion.object == "chat.completion"
    return completion


# --- Anthropic ------------------------------------------------------------------------------

ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": SIG},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        {"type": "text", "text": "Let me check.", "citations": None},
        {
            "type": "server_tool_use",
            "id": "srvtoolu_01",
            "name": "web_search",
            "input": {"query": "paris weather"},
        },
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
        {
            "type": "text",
            "text": "It is sunny",
            "citations": [
                {
                    "type": "char_location",
                    "cited_text": "sunny",
                    "document_index": 0,
                    "document_title": None,
                    "start_char_index": 0,
                    "end_char_index": 5,
                    "file_id": None,
                }
            ],
        },
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "SF"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "output_tokens": 34,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
    },
}


def test_anthropic_message_round_trips_exactly() -> None:
    body = copy.deepcopy(ANTHROPIC_MESSAGE)
    resp = aresp.parse_response(body)
    assert body == ANTHROPIC_MESSAGE
    out = aresp.render_response(resp, "claude-sonnet-4-5")
    assert out == ANTHROPIC_MESSAGE
    validate_anthropic(out)


def test_anthropic_parse_response_parts_and_usage() -> None:
    resp = aresp.parse_response(copy.deepcopy(ANTHROPIC_MESSAGE))
    thinking, redacted, text, server_use, server_result, cited, tool = resp.content
    assert thinking == Thinking("The user wants weather.", SIG)
    assert redacted == RedactedThinking("EmwKAhgBEgy3va3pzix")
    assert text == Text("Let me check.")
    assert isinstance(server_use, Unknown) and server_use.raw["type"] == "server_tool_use"
    assert isinstance(server_result, Unknown) and server_result.origin == "anthropic"
    assert isinstance(cited, Text) and cited.citations and cited.citations[0]["cited_text"] == "sunny"
    assert tool == ToolUse("toolu_01A", "get_weather", {"location": "SF"})
    assert (resp.id, resp.model, resp.stop_reason, resp.stop_sequence) == (
        "msg_01XFDUDYJgAACzvnptvVoYEL",
        "claude-sonnet-4-5",
        "tool_use",
        None,
    )
    assert resp.usage == Usage(input_tokens=12, output_tokens=34, cache_write_tokens=5, cache_read_tokens=100)


def test_anthropic_parse_response_is_lenient_but_needs_an_object() -> None:
    resp = aresp.parse_response(
        {"content": [{"type": "text"}, "junk"], "stop_reason": "end_turn", "stop_sequence": "###"}
    )
    assert resp.content == [Unknown("anthropic", {"type": "text"})]
    assert (resp.id, resp.stop_sequence, resp.usage) == ("", "###", Usage())
    with pytest.raises(InternalError):
        aresp.parse_response([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("resp_id", "expected"),
    [
        ("msg_abc", "msg_abc"),
        ("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT"),
        ("gen-123", "msg_gen-123"),
    ],
)
def test_anthropic_render_ids(resp_id: str, expected: str) -> None:
    out = aresp.render_response(ChatResponse(resp_id, "m", [], "end_turn"), "public")
    assert out["id"] == expected and out["model"] == "public"
    validate_anthropic(out)


def test_anthropic_render_from_openai_upstream_mints_signatures() -> None:
    resp = ChatResponse(
        id="chatcmpl-1",
        model="qwen3",
        content=[
            Thinking("step one"),
            Text("answer"),
            ToolUse("call_1", "f", {"a": 1}),
            Unknown("openai", {"type": "audio"}),  # not an Anthropic block: dropped
            Image("image/png", "AAA"),  # not a response block: dropped
            ToolResult("x", []),
        ],
        stop_reason=None,
        usage=Usage(input_tokens=3, output_tokens=4),
    )
    out = aresp.render_response(resp, "my-model")
    assert out["content"][1:] == [
        {"type": "text", "text": "answer", "citations": None},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    thinking = out["content"][0]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "step one"
    assert thinking["signature"] == aresp.mint_signature("step one")
    assert aresp.is_gateway_signature(thinking["signature"]) and thinking["signature"].startswith(
        aresp.GATEWAY_SIGNATURE_PREFIX
    )
    assert out["stop_reason"] == "end_turn" and out["stop_sequence"] is None
    assert out["usage"] == {
        "input_tokens": 3,
        "output_tokens": 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    message = validate_anthropic(out)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]


@pytest.mark.parametrize(
    ("signature", "gateway"),
    [
        (aresp.mint_signature("x"), True),
        (SIG, False),
        ("", False),
        (None, False),
        ("ErUBCkYIBRgCIkD" + "a" * 40, False),
    ],
)
def test_is_gateway_signature(signature: Any, gateway: bool) -> None:
    assert aresp.is_gateway_signature(signature) is gateway


def test_signature_matches_stream_translator() -> None:
    """A thinking block gets the same signature whether it was streamed or not."""
    stream = pytest.importorskip("claudestore.translate.openai.stream")
    assert stream.mint_signature("same text") == aresp.mint_signature("same text")


# --- OpenAI ---------------------------------------------------------------------------------

OPENAI_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-AbC123",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4.1",
    "system_fingerprint": None,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"SF"}'},
                    },
                    {"id": "call_def", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
                ],
                "reasoning_content": "User wants weather.",
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 10,
        "total_tokens": 130,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 4},
    },
}


def test_openai_completion_round_trips_exactly() -> None:
    body = copy.deepcopy(OPENAI_COMPLETION)
    resp = oresp.parse_response(body)
    assert body == OPENAI_COMPLETION
    out = oresp.render_response(resp, "gpt-4.1", created=1700000000)
    assert out == OPENAI_COMPLETION
    completion = validate_openai(out)
    assert completion.choices[0].message.reasoning_content == "User wants weather."  # type: ignore[attr-defined]


def test_openai_parse_response_parts_and_usage() -> None:
    resp = oresp.parse_response(copy.deepcopy(OPENAI_COMPLETION))
    assert resp.content == [
        Thinking("User wants weather."),
        Text("Checking."),
        ToolUse("call_abc", "get_weather", {"location": "SF"}),
        ToolUse("call_def", "noop", {}),
    ]
    assert (resp.id, resp.model, resp.stop_reason, resp.stop_sequence) == (
        "chatcmpl-AbC123",
        "gpt-4.1",
        "tool_use",
        None,
    )
    assert resp.usage == Usage(
        input_tokens=20, output_tokens=10, cache_write_tokens=0, cache_read_tokens=100, reasoning_tokens=4
    )


def _completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        **extra,
    }


@pytest.mark.parametrize(
    ("finish", "message", "stop"),
    [
        ("stop", {"content": "hi"}, "end_turn"),
        ("length", {"content": "hi"}, "max_tokens"),
        (
            "tool_calls",
            {"content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
            "tool_use",
        ),
        ("function_call", {"function_call": {"name": "f", "arguments": "{}"}}, "tool_use"),
        ("content_filter", {"content": ""}, "refusal"),
        (None, {"content": "hi"}, "end_turn"),
        ("something_new", {"content": "hi"}, "end_turn"),
        # tool calls reported with finish_reason "stop" (Ollama & co.) still mean tool_use [policy]
        (
            "stop",
            {"tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "tool_use",
        ),
        ("stop", {"content": None, "refusal": "I can't help with that."}, "refusal"),
    ],
)
def test_openai_parse_stop_reasons(finish: str | None, message: dict[str, Any], stop: str) -> None:
    assert oresp.parse_response(_completion(message, finish)).stop_reason == stop


@pytest.mark.parametrize(
    ("message", "content"),
    [
        ({"content": "hi", "reasoning": "vllm-style"}, [Thinking("vllm-style"), Text("hi")]),
        ({"content": "hi", "reasoning_content": "ds", "reasoning": "other"}, [Thinking("ds"), Text("hi")]),
        ({"content": ""}, []),
        ({"content": None}, []),
        ({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, [Text("ab")]),
        ({"content": None, "refusal": "No."}, [Text("No.")]),
        (
            {
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                ]
            },
            [ToolUse("c1", "f", {"_raw": "{oops"})],
        ),
        (
            {"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]},
            [ToolUse("c1", "f", {"_raw": "[1]"})],
        ),
        (
            {"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
            [ToolUse("c1", "f", {})],
        ),
        (
            {
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
                ]
            },
            [ToolUse("c1", "f", {"a": 1})],
        ),
        ({"tool_calls": [{"id": "c1", "type": "function", "function": {"arguments": "{}"}}, "junk"]}, []),
    ],
)
def test_openai_parse_message_variants(message: dict[str, Any], content: list[Any]) -> None:
    assert oresp.parse_response(_completion(message)).content == content


def test_openai_parse_response_mints_missing_tool_ids_and_tolerates_empty_choices() -> None:
    resp = oresp.parse_response(
        _completion({"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}, "tool_calls")
    )
    (use,) = resp.content
    assert isinstance(use, ToolUse) and use.id.startswith("call_") and len(use.id) <= 40
    empty = oresp.parse_response(
        {"id": "chatcmpl-9", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 0}}
    )
    assert (empty.content, empty.stop_reason, empty.usage.input_tokens) == ([], "end_turn", 3)
    with pytest.raises(InternalError):
        oresp.parse_response("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, "stop"),
    ],
)
def test_openai_render_finish_reasons(stop: Any, finish: str) -> None:
    out = oresp.render_response(ChatResponse("msg_1", "m", [Text("x")], stop), "public", created=1)
    assert out["choices"][0]["finish_reason"] == finish
    validate_openai(out)


@pytest.mark.parametrize(
    ("resp_id", "expected"),
    [("msg_01XF", "chatcmpl-msg_01XF"), ("chatcmpl-abc", "chatcmpl-abc")],
)
def test_openai_render_ids(resp_id: str, expected: str) -> None:
    assert oresp.render_response(ChatResponse(resp_id, "m", [], "end_turn"), "p")["id"] == expected


def test_openai_render_from_anthropic_upstream() -> None:
    resp = aresp.parse_response(copy.deepcopy(ANTHROPIC_MESSAGE))
    out = oresp.render_response(resp, "public-model")
    assert isinstance(out["created"], int) and out["created"] > 1_700_000_000
    assert out["model"] == "public-model" and out["system_fingerprint"] is None
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Let me check.It is sunny",  # text blocks concatenated, as their stream deltas would be
        "refusal": None,
        "annotations": [],
        "tool_calls": [
            {
                "id": "toolu_01A",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"SF"}'},
            }
        ],
        "reasoning_content": "The user wants weather.",
    }
    assert out["usage"] == {
        "prompt_tokens": 117,
        "completion_tokens": 34,
        "total_tokens": 151,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
    }
    completion = validate_openai(out)
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 100


def test_openai_render_minimal_message() -> None:
    out = oresp.render_response(
        ChatResponse("msg_1", "m", [RedactedThinking("x")], "max_tokens"), "p", created=5
    )
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
    }
    assert out["created"] == 5 and out["choices"][0]["finish_reason"] == "length"
    validate_openai(out)


def test_openai_render_keeps_raw_arguments() -> None:
    out = oresp.render_response(
        ChatResponse("x", "m", [ToolUse("c", "f", {"_raw": "{oops"})], "tool_use"), "p"
    )
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{oops"


def test_cross_format_openai_upstream_to_anthropic_client() -> None:
    resp = oresp.parse_response(copy.deepcopy(OPENAI_COMPLETION))
    out = aresp.render_response(resp, "claude-compatible")
    assert out["id"] == "msg_AbC123"
    assert [b["type"] for b in out["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert out["content"][2] == {
        "type": "tool_use",
        "id": "call_abc",
        "name": "get_weather",
        "input": {"location": "SF"},
    }
    assert aresp.is_gateway_signature(out["content"][0]["signature"])
    assert out["stop_reason"] == "tool_use"
    assert out["usage"] == {
        "input_tokens": 20,
        "output_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100,
    }
    message = validate_anthropic(out)
    assert message.usage.cache_read_input_tokens == 100
