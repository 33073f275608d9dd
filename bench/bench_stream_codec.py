"""Micro benchmark of the per-chunk stream hot path (not a test).

Run: ``.venv/bin/python bench/bench_stream_codec.py [--events N] [--read BYTES]``

A long recorded-style stream for each format (text deltas, then a tool call streamed in
small fragments, usage, end) is cut into network-sized reads and pushed through:

- baseline: ``SSEDecoder.feed`` only (frame splitting, the floor every path pays);
- the two pass-through relays (``AnthropicRelay``, ``OpenAIRelay`` with a model rename);
- the two translations (decoder + encoder).

Figures are events per second, microseconds per event, and the cost relative to the
baseline measured in the same run, interleaved with it (so ratios compare across machines).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson

from claudestore.protocol.anthropic.passthrough import AnthropicRelay
from claudestore.protocol.openai.passthrough import OpenAIRelay
from claudestore.protocol.sse import SSEDecoder
from claudestore.translate.anthropic.stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from claudestore.translate.openai.stream import OpenAIStreamDecoder, OpenAIStreamEncoder

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "streaming",
    "tokens",
    "through",
    "the",
    "gateway",
]


def _text(i: int) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 4))


def anthropic_stream(n: int) -> bytes:
    def ev(name: str, body: dict[str, object]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **body}) + b"\n\n"

    usage = {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1800,
        "output_tokens": 1,
    }
    message = {"model": "claude-sonnet-4-5-20250929", "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message",
               "role": "assistant", "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}  # fmt: skip
    out = [ev("message_start", {"message": message}), ev("ping", {})]
    n_text, n_tool = n * 4 // 5, n // 5
    out.append(ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
    out += [
        ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": _text(i)}})
        for i in range(n_text)
    ]
    out.append(ev("content_block_stop", {"index": 0}))
    tool = {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "write_file", "input": {}}
    out.append(ev("content_block_start", {"index": 1, "content_block": tool}))
    frags = ['{"path": "a.txt", "content": "'] + [_text(i) for i in range(n_tool - 2)] + ['"}']
    out += [
        ev("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": f}})
        for f in frags
    ]
    out.append(ev("content_block_stop", {"index": 1}))
    out.append(
        ev(
            "message_delta",
            {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": n}},
        )
    )
    out.append(ev("message_stop", {}))
    return b"".join(out)


def openai_stream(n: int) -> bytes:
    head = {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk", "created": 1741569952,
            "model": "gpt-4o-2024-08-06", "service_tier": "default", "system_fingerprint": "fp_fc9f1d7035"}  # fmt: skip

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice], "usage": None}) + b"\n\n"

    n_text, n_tool = n * 4 // 5, n // 5
    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    out += [chunk({"content": _text(i)}) for i in range(n_text)]
    call = {"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
            "function": {"name": "write_file", "arguments": ""}}  # fmt: skip
    out.append(chunk({"tool_calls": [call]}))
    frags = ['{"path": "a.txt", "content": "'] + [_text(i) for i in range(n_tool - 2)] + ['"}']
    out += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in frags]
    out.append(chunk({}, "tool_calls"))
    usage = {"prompt_tokens": 2095, "completion_tokens": n, "total_tokens": 2095 + n,
             "prompt_tokens_details": {"cached_tokens": 1800}}  # fmt: skip
    out.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\ndata: [DONE]\n\n")
    return b"".join(out)


def reads(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def split_only(chunks: list[bytes]) -> int:
    dec, n = SSEDecoder(), 0
    for c in chunks:
        for _ in dec.feed(c):
            n += 1
    return n


def relay(make: Callable[[], AnthropicRelay | OpenAIRelay]) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        dec, r, out = SSEDecoder(), make(), []
        for c in chunks:
            out += [r.feed(f) for f in dec.feed(c)]
        return len(out)

    return run


def translation(
    make_dec: Callable[[], AnthropicStreamDecoder | OpenAIStreamDecoder],
    make_enc: Callable[[], AnthropicStreamEncoder | OpenAIStreamEncoder],
) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        sse, dec, enc, out = SSEDecoder(), make_dec(), make_enc(), []
        for c in chunks:
            for f in sse.feed(c):
                out += [enc.encode(ev) for ev in dec.feed(f)]
        out += [enc.encode(ev) for ev in dec.finish()]
        return len(out)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per stream (default 20000)")
    parser.add_argument("--read", type=int, default=1024, help="bytes per network read (default 1024)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    streams = {"anthropic": anthropic_stream(args.events), "openai": openai_stream(args.events)}
    chunks = {k: reads(v, args.read) for k, v in streams.items()}
    events = {k: split_only(c) for k, c in chunks.items()}
    cases: list[tuple[str, str, Callable[[list[bytes]], int]]] = [
        ("baseline: SSEDecoder split (anthropic)", "anthropic", split_only),
        ("baseline: SSEDecoder split (openai)", "openai", split_only),
        ("AnthropicRelay, model renamed", "anthropic", relay(lambda: AnthropicRelay("claude-pub", "claude-sonnet-4-5-20250929"))),
        ("OpenAIRelay, model renamed, usage kept", "openai", relay(lambda: OpenAIRelay("gpt-pub", "gpt-4o", client_wants_usage=True))),
        ("Anthropic -> OpenAI (decoder + encoder)", "anthropic",
         translation(AnthropicStreamDecoder, lambda: OpenAIStreamEncoder("gpt-pub", include_usage=True))),
        ("OpenAI -> Anthropic (decoder + encoder)", "openai",
         translation(OpenAIStreamDecoder, lambda: AnthropicStreamEncoder("claude-pub"))),
    ]  # fmt: skip
    best = dict.fromkeys(range(len(cases)), float("inf"))
    for _ in range(args.repeat):  # interleaved, so that a busy moment hits every case alike
        for k, (_, src, fn) in enumerate(cases):
            t0 = time.perf_counter()
            fn(chunks[src])
            best[k] = min(best[k], time.perf_counter() - t0)
    base = {cases[k][1]: best[k] for k in (0, 1)}
    print(f"{args.events} events per stream, {args.read}-byte reads, best of {args.repeat} (interleaved)")
    print(
        f"stream sizes: anthropic {len(streams['anthropic']) / 1e6:.2f} MB, openai {len(streams['openai']) / 1e6:.2f} MB\n"
    )
    print(f"{'path':<42} {'events/s':>12} {'us/event':>9} {'x baseline':>11}")
    for k, (label, src, _) in enumerate(cases):
        n = events[src]
        print(f"{label:<42} {n / best[k]:>12,.0f} {best[k] / n * 1e6:>9.2f} {best[k] / base[src]:>11.2f}")


if __name__ == "__main__":
    main()
