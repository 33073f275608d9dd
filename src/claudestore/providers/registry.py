"""Build providers from configuration, sharing one pooled HTTP session."""

from __future__ import annotations

import aiohttp

from claudestore.config import UpstreamConfig
from claudestore.providers.anthropic import AnthropicProvider
from claudestore.providers.base import Provider
from claudestore.providers.openai import OpenAIProvider

PROVIDER_TYPES: dict[str, type[Provider]] = {"anthropic": AnthropicProvider, "openai": OpenAIProvider}


def provider_type(kind: str) -> type[Provider]:
    if kind == "local":  # imported only when configured: it needs the optional llama-cpp-python
        from claudestore.providers.local import LocalProvider

        return LocalProvider
    return PROVIDER_TYPES[kind]


def make_session(upstreams: list[UpstreamConfig]) -> aiohttp.ClientSession:
    """One keep-alive pool for every upstream, sized for long-lived streams."""
    limit = sum(u.max_connections for u in upstreams) or 100
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",))


def build_providers(upstreams: list[UpstreamConfig], session: aiohttp.ClientSession) -> dict[str, Provider]:
    return {u.name: provider_type(u.type)(u, session) for u in upstreams}
