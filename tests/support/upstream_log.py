"""What the shared fake upstream received, for the end-to-end SDK suites.

``claude-test`` is served by an Anthropic-format upstream (model ``fake-claude``), ``gpt-test``
by an OpenAI-format one (``fake-gpt``); tests compare what the client saw with the body the
fake actually received (read right after the call: every test shares one fake).
"""

from __future__ import annotations

from typing import Any

import httpx

from claudestore.fake_upstream.script import WORDS, count_input_tokens

UPSTREAM_FORMAT = {"claude-test": "anthropic", "gpt-test": "openai"}
UPSTREAM_MODEL = {"claude-test": "fake-claude", "gpt-test": "fake-gpt"}
UPSTREAM_PATH = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}


class UpstreamLog:
    """``FakeUpstream.last_request()`` over one shared async client."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def last(self) -> dict[str, Any]:
        resp = await self.http.get("/_fake/requests", params={"limit": 1})
        resp.raise_for_status()
        last: dict[str, Any] = resp.json()[-1]
        return last

    async def body(self, model: str) -> dict[str, Any]:
        """The body of the last request, checked to be a generation for ``model``'s upstream."""
        last = await self.last()
        assert last["path"] == UPSTREAM_PATH[UPSTREAM_FORMAT[model]], last["path"]
        body: dict[str, Any] = last["body"]
        assert body["model"] == UPSTREAM_MODEL[model]
        return body

    async def input_tokens(self, model: str) -> int:
        """The input tokens the fake reported for the last request (cache tokens excluded)."""
        return count_input_tokens(await self.body(model), UPSTREAM_FORMAT[model])  # type: ignore[arg-type]

    async def prompt_tokens(self, model: str, cache_read: int = 0, cache_write: int = 0) -> int:
        """The OpenAI ``prompt_tokens`` of the fake's report on the last request (cache included)."""
        return await self.input_tokens(model) + cache_read + cache_write


def words(n: int, source: tuple[str, ...] = WORDS) -> str:
    """The text of the fake's first ``n`` tokens."""
    return " ".join(source[k % len(source)] for k in range(n))


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def collect(stream: Any) -> list[Any]:
    """Every event (or chunk) of an SDK stream."""
    return [ev async for ev in stream]
