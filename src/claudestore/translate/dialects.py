"""A dialect bundles everything the gateway does with one wire format.

The HTTP layer holds two of them: the client's (the endpoint that was called) and the
upstream's (the provider's format). When they are the same the request body and the
stream pass through with only the model name touched; otherwise the request goes
wire → canonical → wire and the stream goes frames → canonical events → frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from claudestore.core.conversation import ChatRequest
from claudestore.core.errors import GatewayError
from claudestore.core.response import ChatResponse, Usage
from claudestore.core.stream import StreamError, StreamEvent
from claudestore.protocol.anthropic import errors as anthropic_errors
from claudestore.protocol.anthropic.passthrough import AnthropicRelay
from claudestore.protocol.openai import errors as openai_errors
from claudestore.protocol.openai.passthrough import OpenAIRelay
from claudestore.protocol.sse import Frame
from claudestore.translate import mapping
from claudestore.translate.anthropic import request as anthropic_request
from claudestore.translate.anthropic import response as anthropic_response
from claudestore.translate.anthropic.stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from claudestore.translate.openai import request as openai_request
from claudestore.translate.openai import response as openai_response
from claudestore.translate.openai.stream import OpenAIStreamDecoder, OpenAIStreamEncoder

JSONObject = dict[str, Any]


class StreamDecoder(Protocol):
    """Upstream frames → canonical events; ``finish`` at EOF closes the grammar or reports the cut."""

    usage: Usage
    stop_reason: str | None
    error: StreamError | None

    def feed(self, frame: Frame) -> list[StreamEvent]: ...
    def finish(self) -> list[StreamEvent]: ...


class StreamEncoder(Protocol):
    def encode(self, ev: StreamEvent) -> bytes: ...
    def keepalive(self) -> bytes: ...


class Relay(Protocol):
    """Same-format relay: frames out as they came in, usage read on the way."""

    usage: Usage
    error: StreamError | None

    @property
    def stop_reason(self) -> str | None: ...
    @property
    def complete(self) -> bool: ...
    def feed(self, frame: Frame) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    parse_request: Callable[[JSONObject], ChatRequest]
    build_request: Callable[[ChatRequest, str, int], JSONObject]
    parse_response: Callable[[JSONObject], ChatResponse]
    render_response: Callable[[ChatResponse, str], JSONObject]
    usage_of: Callable[[Any], Usage]
    prepare_passthrough: Callable[[JSONObject, ChatRequest, str], JSONObject]
    stream_decoder: Callable[[], StreamDecoder]
    stream_encoder: Callable[[ChatRequest, str], StreamEncoder]
    relay: Callable[[ChatRequest, str, str], Relay]
    error_status: Callable[[GatewayError], int]
    error_body: Callable[[GatewayError, str], bytes]
    stream_error: Callable[[str, str], bytes]


def _anthropic_passthrough(body: JSONObject, req: ChatRequest, upstream_model: str) -> JSONObject:
    body["model"] = upstream_model
    # Thinking blocks that the gateway minted (from an OpenAI-format upstream's reasoning) carry
    # a signature an Anthropic upstream would reject; the client may echo them back.
    for message in body["messages"]:
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, list):
            kept = [b for b in content if not _is_minted_thinking(b)]
            if len(kept) != len(content):
                message["content"] = kept
    return body


def _is_minted_thinking(block: Any) -> bool:
    return (
        isinstance(block, dict)
        and block.get("type") == "thinking"
        and anthropic_response.is_gateway_signature(block.get("signature") or "")
    )


def _openai_passthrough(body: JSONObject, req: ChatRequest, upstream_model: str) -> JSONObject:
    body["model"] = upstream_model
    if req.stream:
        # The gateway bills from the upstream's own usage report, so it always asks for it.
        options = body.get("stream_options")
        body["stream_options"] = (
            {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        )
    return body


def _usage_field(reader: Callable[[Any], Usage]) -> Callable[[Any], Usage]:
    return lambda body: reader(body.get("usage") if isinstance(body, dict) else None)


ANTHROPIC = Dialect(
    name="anthropic",
    parse_request=anthropic_request.parse_request,
    build_request=lambda req, model, default_max: anthropic_request.build_request(
        req, model, default_max_tokens=default_max
    ),
    parse_response=anthropic_response.parse_response,
    render_response=anthropic_response.render_response,
    usage_of=_usage_field(mapping.anthropic_usage),
    prepare_passthrough=_anthropic_passthrough,
    stream_decoder=AnthropicStreamDecoder,
    stream_encoder=lambda req, model: AnthropicStreamEncoder(model),
    relay=lambda req, public, upstream: AnthropicRelay(public, upstream),
    error_status=anthropic_errors.status_for,
    error_body=anthropic_errors.error_body,
    stream_error=anthropic_errors.stream_error_event,
)

OPENAI = Dialect(
    name="openai",
    parse_request=openai_request.parse_request,
    build_request=lambda req, model, default_max: openai_request.build_request(req, model),
    parse_response=openai_response.parse_response,
    render_response=openai_response.render_response,
    usage_of=_usage_field(mapping.openai_usage),
    prepare_passthrough=_openai_passthrough,
    stream_decoder=OpenAIStreamDecoder,
    stream_encoder=lambda req, model: OpenAIStreamEncoder(model, include_usage=req.include_usage),
    relay=lambda req, public, upstream: OpenAIRelay(public, upstream, client_wants_usage=req.include_usage),
    error_status=openai_errors.status_for,
    error_body=openai_errors.error_body,
    stream_error=openai_errors.stream_error_event,
)

DIALECTS: dict[str, Dialect] = {"anthropic": ANTHROPIC, "openai": OPENAI}
