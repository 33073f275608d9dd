"""Claude Code (`claude -p`) pointed at the gateway by ANTHROPIC_BASE_URL, with a gateway key.

Runs the real Claude Code binary from npm through an Anthropic-format upstream and through
an OpenAI-format one (translated), including a turn where the model calls a tool, Claude Code
runs it and sends the result back.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.clients import require_js_client
from tests.support.servers import FakeUpstream, Gateway


def run_claude(gateway: Gateway, model: str, prompt: str, home: Path) -> dict:
    binary = require_js_client("@anthropic-ai/claude-code/bin/claude.exe")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": gateway.key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
    }
    proc = subprocess.run(
        [str(binary), "-p", prompt, "--output-format", "json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"claude exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["claude-test", "claude-via-openai"])
def test_claude_code_answers(
    gateway: Gateway, fake_upstream: FakeUpstream, tmp_path: Path, model: str
) -> None:
    result = run_claude(gateway, model, "Say hello [[fake tokens=4]]", tmp_path)
    assert result["is_error"] is False, result
    assert result["result"] == "lorem ipsum dolor sit"
    usage = result["usage"]
    assert usage["output_tokens"] == 4
    assert usage["input_tokens"] > 0


@pytest.mark.parametrize("model", ["claude-test", "claude-via-openai"])
def test_claude_code_tool_turn(
    gateway: Gateway, fake_upstream: FakeUpstream, tmp_path: Path, model: str
) -> None:
    """The fake answers the first turn with a call to the Read tool; Claude Code runs it,
    sends the tool result back through the gateway, and the second turn ends the task."""
    result = run_claude(gateway, model, "Read a file [[fake tool=Read tokens=2]]", tmp_path)
    assert result["is_error"] is False, result
    assert result["num_turns"] == 2
    # The second request the upstream saw carries the tool result for the tool call it made.
    bodies = [
        r["body"] for r in fake_upstream.requests(50) if r["path"].endswith(("/messages", "/completions"))
    ]
    last = bodies[-1]["messages"]
    if model == "claude-test":
        blocks = [b for m in last if isinstance(m["content"], list) for b in m["content"]]
        assert any(b.get("type") == "tool_result" for b in blocks)
    else:
        assert any(m["role"] == "tool" for m in last)
