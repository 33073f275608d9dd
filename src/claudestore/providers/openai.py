"""Upstream provider for any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, OpenRouter).

``base_url`` includes the version path, as in the OpenAI SDK (``http://host:8000/v1``).
There is no token-counting endpoint in this API; ``count_tokens`` is answered by the
HTTP layer with a one-token generation whose ``usage.prompt_tokens`` is exact.
"""

from __future__ import annotations

from typing import Any

from claudestore.protocol.openai.errors import upstream_error_message
from claudestore.providers.base import Operation, Provider


class OpenAIProvider(Provider):
    format = "openai"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._url = self.base_url + "/chat/completions"
        base = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            base["authorization"] = f"Bearer {self.api_key}"
        base.update(self.config.headers)
        self._base_headers = base

    def url(self, op: Operation) -> str:
        return self._url

    def fixed_headers(self, op: Operation) -> dict[str, str]:
        return self._base_headers

    def error_message(self, body: Any) -> str | None:
        return upstream_error_message(body)
