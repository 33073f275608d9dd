"""OpenAI chat-completions body → the local model's conversation, prompt tokens and sampler.

The local upstream speaks the OpenAI wire format, so this reads exactly what the gateway
sends an OpenAI-compatible upstream: ``messages`` (text only), ``max_completion_tokens`` /
``max_tokens``, ``stop``, ``temperature``, ``top_p``, ``top_k``, ``seed`` and the two
penalties. What a small local text model cannot do (tools, images, ``n`` > 1, JSON modes,
logprobs) is a 400 ``Unsupported`` that names the feature.

Prompts are built in the model's own turn format. Gemma models get Gemma's turn markers
(system text folded into the first user turn, as Gemma's own template does); other GGUF
files use the chat template stored in the file. Markers are inserted as token ids and the
text between them is tokenized with ``special=False``, so a message that contains
``<end_of_turn>`` as text cannot forge a turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from claudestore.core.errors import InvalidRequest, Unsupported

__all__ = ["Sampling", "Tokenizer", "Turn", "gemma_prompt", "parse_request", "template_prompt"]

# Sampler defaults when the request names none (llama.cpp's own; a base model rambles at temperature 1).
DEFAULT_TEMPERATURE, DEFAULT_TOP_P, DEFAULT_TOP_K = 0.8, 0.95, 40


class Tokenizer(Protocol):
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int | None = None  # None: until the context is full
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclass(frozen=True, slots=True)
class Conversation:
    system: str
    turns: list[Turn] = field(default_factory=list)


def parse_request(body: dict[str, Any], model: str) -> tuple[Conversation, Sampling]:
    _check_supported(body, model)
    return _conversation(body.get("messages"), model), _sampling(body)


def _check_supported(body: dict[str, Any], model: str) -> None:
    def unsupported(feature: str, param: str) -> Unsupported:
        return Unsupported(
            f"{feature} is not supported by the local model {model!r} (a small text-only base model).",
            param=param,
        )

    if body.get("tools") or body.get("functions"):
        raise unsupported("Tool use (function calling)", "tools")
    if body.get("n") not in (None, 1):
        raise unsupported("More than one choice (n > 1)", "n")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise unsupported(f"response_format {fmt.get('type')!r}", "response_format")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise unsupported("logprobs", "logprobs")
    if body.get("audio") or body.get("modalities") not in (None, ["text"]):
        raise unsupported("Audio output", "modalities")


def _text(content: Any, role: str, model: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages: the content of a {role} message must be a string or a list of parts."
        )
    texts: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            texts.append(str(part.get(kind) or ""))
            continue
        feature = {"image_url": "Image input", "input_audio": "Audio input", "file": "File input"}
        raise Unsupported(
            f"{feature.get(str(kind), f'Content part {kind!r}')} is not supported by the local model "
            f"{model!r}: it reads text only.",
            param="messages",
        )
    return "".join(texts)


def _conversation(messages: Any, model: str) -> Conversation:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required.", param="messages")
    system: list[str] = []
    turns: list[Turn] = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            system.append(_text(m.get("content"), role, model))
        elif role == "user":
            turns.append(Turn("user", _text(m.get("content"), role, model)))
        elif role == "assistant":
            if m.get("tool_calls") or m.get("function_call"):
                raise Unsupported(
                    f"Tool use (function calling) is not supported by the local model {model!r}.",
                    param="messages",
                )
            turns.append(Turn("assistant", _text(m.get("content"), role, model)))
        elif role in ("tool", "function"):
            raise Unsupported(
                f"Tool results are not supported by the local model {model!r}: it has no tool use.",
                param="messages",
            )
        else:
            raise InvalidRequest(f"messages: unknown role {role!r}.", param="messages")
    return Conversation("\n\n".join(s for s in system if s), turns)


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{name}: must be a number from {low:g} to {high:g}.", param=name)
    return float(value)


def _int(body: dict[str, Any], name: str, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidRequest(f"{name}: must be an integer of at least {low}.", param=name)
    return value


def _sampling(body: dict[str, Any]) -> Sampling:
    max_tokens = _int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("stop: must be a string or a list of strings.", param="stop")
    top_k = _int(body, "top_k", 0)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidRequest("seed: must be an integer.", param="seed")
    return Sampling(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, 2.0),
        top_p=_number(body, "top_p", DEFAULT_TOP_P, 0.0, 1.0),
        top_k=DEFAULT_TOP_K if top_k is None else top_k,
        seed=seed & 0xFFFFFFFF if seed is not None else None,
        stop=tuple(s for s in stops if s),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
    )


def gemma_prompt(tok: Tokenizer, conv: Conversation) -> list[int]:
    """Gemma's turn format: ``<bos><start_of_turn>user\\n…<end_of_turn>\\n<start_of_turn>model\\n``.

    A final assistant message is a prefill: its turn is left open for the model to continue.
    """
    (sot,) = tok.tokenize(b"<start_of_turn>", add_bos=False, special=True)
    (eot,) = tok.tokenize(b"<end_of_turn>", add_bos=False, special=True)

    def text(s: str) -> list[int]:
        return tok.tokenize(s.encode(), add_bos=False, special=False)

    turns = list(conv.turns)
    if conv.system:
        if turns and turns[0].role == "user":
            turns[0] = Turn("user", f"{conv.system}\n\n{turns[0].text}")
        else:
            turns.insert(0, Turn("user", conv.system))
    prefill = turns.pop() if turns and turns[-1].role == "assistant" else None
    out = tok.tokenize(b"", add_bos=True, special=False)
    for turn in turns:
        role = "user" if turn.role == "user" else "model"
        out += [sot, *text(f"{role}\n{turn.text}"), eot, *text("\n")]
    out += [sot, *text("model\n" + (prefill.text if prefill else ""))]
    return out


def template_prompt(
    tok: Tokenizer, conv: Conversation, render: Callable[[Sequence[dict[str, str]]], tuple[str, bool]]
) -> list[int]:
    """A model's own chat template (``render`` returns the prompt and whether it holds the BOS)."""
    messages = [{"role": "system", "content": conv.system}] if conv.system else []
    messages += [{"role": t.role, "content": t.text} for t in conv.turns]
    prompt, has_bos = render(messages)
    return tok.tokenize(prompt.encode(), add_bos=not has_bos, special=True)
