"""Build providers from configuration, sharing one pooled HTTP client."""

from __future__ import annotations

from claudestore.config import UpstreamConfig
from claudestore.providers.anthropic import AnthropicProvider
from claudestore.providers.base import Provider
from claudestore.providers.http import HTTPClient
from claudestore.providers.openai import OpenAIProvider

PROVIDER_TYPES: dict[str, type[Provider]] = {"anthropic": AnthropicProvider, "openai": OpenAIProvider}


def provider_type(kind: str) -> type[Provider]:
    if kind == "local":  # imported only when configured: it needs the optional llama-cpp-python
        from claudestore.providers.local import LocalProvider

        return LocalProvider
    return PROVIDER_TYPES[kind]


def make_client(upstreams: list[UpstreamConfig]) -> HTTPClient:
    """One keep-alive pool for every upstream, sized for long-lived streams."""
    limit = sum(u.max_connections for u in upstreams) or 100
    return HTTPClient(limit=limit, keepalive=60.0)


def build_providers(upstreams: list[UpstreamConfig], client: HTTPClient) -> dict[str, Provider]:
    return {u.name: provider_type(u.type)(u, client) for u in upstreams}
