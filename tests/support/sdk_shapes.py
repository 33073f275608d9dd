"""The official SDKs' request TypedDicts as checks: a body the gateway writes has every
required key and no key the SDK does not know (recursively where practical)."""

from __future__ import annotations

from typing import Any

import typing_extensions as te
from anthropic import types as at
from anthropic.types.message_create_params import MessageCreateParamsBase
from openai.types import chat as oc
from openai.types.chat.chat_completion_content_part_param import File as OpenAIFilePart
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.shared_params import FunctionDefinition


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
