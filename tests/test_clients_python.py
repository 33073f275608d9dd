"""Python client libraries pointed at the gateway only by base URL and key: LangChain
(``langchain-anthropic`` ``ChatAnthropic``, ``langchain-openai`` ``ChatOpenAI``: invoke, stream,
``bind_tools``) and LiteLLM used as a client library (``completion`` / ``acompletion`` with
``api_base`` at the gateway and ``anthropic/…`` / ``openai/…`` model prefixes, streaming and a
tool call). Every case goes through ``claude-test`` (Anthropic-format upstream) and
``gpt-test`` (OpenAI-format upstream).

A library that is not installed is skipped, with the reason. Once it is pinned in the ``dev``
extra of pyproject.toml, ``CLAUDESTORE_REQUIRE_CLIENTS=1`` (set by CI) turns that skip into a
failure. The client libraries do not depend on the database, so these tests run on SQLite only.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.servers import Gateway

MODELS = ["claude-test", "gpt-test"]
TEXT4 = "lorem ipsum dolor sit"
TOOL_ARGS = {"city": "Paris", "days": 3}
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}

pytestmark = [
    # These clients do not care about the database backend: run them against the SQLite gateway only.
    pytest.mark.parametrize("gateway", ["sqlite"], indirect=True),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litellm.*"),
]


def _pinned(distribution: str) -> bool:
    extras = tomllib.loads(PYPROJECT.read_text()).get("project", {}).get("optional-dependencies", {})
    names = {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in extras.get("dev", [])}
    return distribution.lower() in names


def require(module: str, distribution: str) -> ModuleType:
    """Import a client library, or skip (fail under CLAUDESTORE_REQUIRE_CLIENTS=1 once it is pinned)."""
    if module == "litellm":
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = f"{distribution} is not installed ({exc}); pin it in the dev extra"
        if os.environ.get("CLAUDESTORE_REQUIRE_CLIENTS") == "1" and _pinned(distribution):
            pytest.fail(reason)
        pytest.skip(reason)


def _merge(chunks: list[Any]) -> Any:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# -- LangChain ---------------------------------------------------------------------------------


@pytest.fixture
def chat_models(gateway: Gateway) -> dict[str, Any]:
    """``{"ChatAnthropic": factory, "ChatOpenAI": factory}``, each taking a model id."""
    lc_anthropic = require("langchain_anthropic", "langchain-anthropic")
    lc_openai = require("langchain_openai", "langchain-openai")
    return {
        "ChatAnthropic": lambda model: lc_anthropic.ChatAnthropic(
            model=model, base_url=gateway.url, api_key=gateway.key, max_tokens=100, max_retries=0, timeout=30
        ),
        "ChatOpenAI": lambda model: lc_openai.ChatOpenAI(
            model=model,
            base_url=gateway.url + "/v1",
            api_key=gateway.key,
            max_retries=0,
            timeout=30,
            stream_usage=True,
        ),
    }


@pytest.mark.parametrize("client", ["ChatAnthropic", "ChatOpenAI"])
@pytest.mark.parametrize("model", MODELS)
def test_langchain_invoke_and_stream(chat_models: dict[str, Any], client: str, model: str) -> None:
    chat = chat_models[client](model)
    answer = chat.invoke("Say hello [[fake tokens=4]]")
    assert answer.content == TEXT4
    assert answer.usage_metadata["output_tokens"] == 4
    assert answer.usage_metadata["input_tokens"] > 0

    chunks = list(chat.stream("Say hello [[fake tokens=4]]"))
    assert len(chunks) >= 4
    full = _merge(chunks)
    text = full.content if isinstance(full.content, str) else "".join(b.get("text", "") for b in full.content)
    assert text == TEXT4
    assert full.usage_metadata["output_tokens"] == 4


@pytest.mark.parametrize("client", ["ChatAnthropic", "ChatOpenAI"])
@pytest.mark.parametrize("model", MODELS)
def test_langchain_bind_tools(chat_models: dict[str, Any], client: str, model: str) -> None:
    chat = chat_models[client](model).bind_tools([WEATHER_TOOL])
    prompt = "Weather in Paris? [[fake tool=get_weather tokens=1]]"
    answer = chat.invoke(prompt)
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("get_weather", TOOL_ARGS)]
    assert answer.tool_calls[0]["id"]

    full = _merge(list(chat.stream(prompt)))
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("get_weather", TOOL_ARGS)]
    # The arguments arrived in pieces and LangChain joined them.
    assert len([c for c in full.tool_call_chunks if c.get("args")]) >= 1


async def test_langchain_async(chat_models: dict[str, Any]) -> None:
    for client in ("ChatAnthropic", "ChatOpenAI"):
        answer = await chat_models[client]("gpt-test").ainvoke("hi [[fake tokens=2]]")
        assert answer.content == "lorem ipsum"


# -- LiteLLM as a client library -------------------------------------------------------------------


def _litellm_target(gateway: Gateway, prefix: str, model: str) -> dict[str, Any]:
    base = gateway.url if prefix == "anthropic" else gateway.url + "/v1"
    return {"model": f"{prefix}/{model}", "api_base": base, "api_key": gateway.key, "max_tokens": 50}


@pytest.fixture
def litellm() -> Any:
    module = require("litellm", "litellm")
    module.suppress_debug_info = True
    module.telemetry = False
    return module


@pytest.mark.parametrize("prefix", ["anthropic", "openai"])
@pytest.mark.parametrize("model", MODELS)
def test_litellm_completion(litellm: Any, gateway: Gateway, prefix: str, model: str) -> None:
    target = _litellm_target(gateway, prefix, model)
    hello = [{"role": "user", "content": "Say hello [[fake tokens=4]]"}]

    answer = litellm.completion(messages=hello, **target)
    assert answer.choices[0].message.content == TEXT4
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens == 4

    text, usage = "", None
    for chunk in litellm.completion(
        messages=hello, stream=True, stream_options={"include_usage": True}, **target
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = getattr(chunk, "usage", None) or usage
    assert text == TEXT4
    assert usage is not None and usage.completion_tokens == 4

    weather = [{"role": "user", "content": "Weather in Paris? [[fake tool=get_weather tokens=1]]"}]
    answer = litellm.completion(messages=weather, tools=[WEATHER_TOOL], **target)
    assert answer.choices[0].finish_reason == "tool_calls"
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGS


@pytest.mark.parametrize("prefix", ["anthropic", "openai"])
async def test_litellm_acompletion_stream(litellm: Any, gateway: Gateway, prefix: str) -> None:
    for model in MODELS:
        target = _litellm_target(gateway, prefix, model)
        stream = await litellm.acompletion(
            messages=[{"role": "user", "content": "Say hello [[fake tokens=4]]"}], stream=True, **target
        )
        text = ""
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        assert text == TEXT4
