"""The README's two curl examples, run with the real curl binary against a real gateway."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import Gateway

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def curl_examples() -> list[str]:
    """The seed's two examples: Messages API, and streaming chat completions, for a Claude model."""
    blocks = [b for b in re.findall(r"```sh\n(curl .*?)```", README, flags=re.S) if "claude-sonnet-4-6" in b]
    messages = [b for b in blocks if "/v1/messages" in b]
    chat = [b for b in blocks if "/v1/chat/completions" in b]
    assert messages and chat, "the README lost its curl examples"
    return [messages[0], chat[0]]


def run_curl(example: str, gateway: Gateway, model: str) -> str:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    command = (
        example.replace("http://127.0.0.1:8080", gateway.url)
        .replace("$CLAUDESTORE_KEY", gateway.key)
        .replace("claude-sonnet-4-6", model)
        .replace("Hello, Claude", "Hello, Claude [[fake tokens=3]]")
    )
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True)
    return out.stdout


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_messages_example(gateway: Gateway, model: str) -> None:
    body = json.loads(run_curl(curl_examples()[0], gateway, model))
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["content"][0] == {"type": "text", "text": "lorem ipsum dolor", "citations": None}
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == 3


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_streaming_chat_example(gateway: Gateway, model: str) -> None:
    text = run_curl(curl_examples()[1], gateway, model)
    frames = [f for f in text.split("\n\n") if f]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames), frames
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f[6:]) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "lorem ipsum dolor"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in chunks)
