"""Upstream provider for any server that speaks the Anthropic Messages API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claudestore.protocol.anthropic.errors import upstream_error_message
from claudestore.providers.base import Operation, Provider

DEFAULT_VERSION = "2023-06-01"
# Client headers forwarded as they came.
_FORWARDED = ("anthropic-beta",)


class AnthropicProvider(Provider):
    format = "anthropic"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._urls = {
            "generate": self.base_url + "/v1/messages",
            "count_tokens": self.base_url + "/v1/messages/count_tokens",
        }
        base = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            base["x-api-key"] = self.api_key
        base.update(self.config.headers)
        self._base_headers = base

    def url(self, op: Operation) -> str:
        return self._urls[op]

    def fixed_headers(self, op: Operation) -> dict[str, str]:
        return self._base_headers

    def client_headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {"anthropic-version": client_headers.get("anthropic-version") or DEFAULT_VERSION}
        for name in _FORWARDED:
            value = client_headers.get(name)
            if value:
                headers[name] = value
        return headers

    def error_message(self, body: Any) -> str | None:
        return upstream_error_message(body)
