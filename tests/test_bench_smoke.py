"""The benchmark harness runs end to end in its smallest mode (bench/run.py --smoke).

Not a benchmark: one scenario, 0.3 s per measurement, a tiny load, the Python load
generator only (no wrk needed), the report written to a temporary path. It checks that the
harness starts the fake upstream and the gateway, makes a customer key (``--accounting
sqlite``: account, plan, credit, prices through the CLI), measures, and writes every
expected row.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    work = tmp_path / "work"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--smoke",
            "--accounting",
            "sqlite",
            "--output",
            str(out),
            "--workdir",
            str(work),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    for expected in (
        "# ClaudeStore benchmark results",
        "- **Command**: `bench/run.py --smoke",
        "- **Commit**: ",
        "- **Machine**: ",
        "## Issue 7 targets",
        "## Added latency at one connection",
        "## Throughput at saturation",
        "## Latency at a fixed offered load",
        "## Memory (RSS)",
        "| /v1/messages → claude-test (pass-through) | direct /v1/messages |",
        "| added latency p50, non-stream pass-through, 1 connection |",
        "| RSS per worker at idle |",
        "| gateway with 10 of 10 streams open",
        "## Keys + limits + metering on",
        "| throughput cost of limits + pricing (customer key vs operator key, sqlite; median of alternated rounds) |",
        "| scenario | operator key req/s | customer key req/s | throughput cost | CPU-implied cost |",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"

    results = json.loads((work / "results.json").read_text())
    direct = results["targets"]["direct:anthropic:json"]
    through = results["targets"]["messages:claude-test:json"]
    for target in (direct, through):
        assert target["errors"] == 0
        assert target["saturation"]["requests"] > 0
        assert target["one_conn"]["latency_ms"]["p50"] > 0
        assert target["rate"]["requests"] > 0
    assert through["saturation"]["cpu_s_per_1k"]["gateway"] > 0
    assert results["memory"]["gateway_start"]["total"] > 0
    assert results["memory"]["hold"]["open"] == 10
    customer = results["accounting"]["targets"]["messages:claude-test:json"]
    assert customer["errors"] == 0
    assert customer["paired"]["customer"]["rps"] > 0
    assert customer["paired"]["operator"]["rps"] > 0
    assert customer["paired"]["cost"]["median"] < 1  # one round in a smoke run: any figure below 100%
    assert customer["paired"]["cpu_cost"]["min"] <= customer["paired"]["cpu_cost"]["max"]
    assert customer["probe"]["ratelimit_headers"], "the customer key went through the limiter"


def test_soak_smoke(tmp_path: Path) -> None:
    """scripts/soak.py (the soak test, not run in CI) for a few seconds: it starts the fake
    upstream and a metered gateway, sends every scenario of its mix, samples RSS, fds and the
    ledger, checks the ledger against the requests, and writes its Markdown summary."""
    out = tmp_path / "SOAK.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "soak.py"),
            "--seconds",
            "6",
            "--rps",
            "25",
            "--sample-every",
            "1",
            "--table-every",
            "2",
            "--warmup",
            "1",
            "--output",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    for expected in (
        "# ClaudeStore soak test",
        "- **Command**: `scripts/soak.py --seconds 6",
        "- **Commit**: ",
        "- **Machine**: ",
        "- **Verdict**: PASS",
        "- [x] ledger rows = requests sent with the customer key",
        "- [x] no unexpected outcome",
        "## Per interval",
        "| time | done | ok | stream_error |",
        "## By scenario",
        "| disconnect | 8 | disconnect |",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"
    ledger = re.search(r"Ledger: (\d+) rows for (\d+) metered requests", text)
    assert ledger and ledger.group(1) == ledger.group(2) and int(ledger.group(1)) > 50, text
    for scenario in ("ok", "disconnect", "cut", "error_after", "invalid_json"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {scenario} |"))
        assert sum(int(cell) for cell in row.split("|")[4:-1]) > 0, f"scenario {scenario} never ran:\n{text}"
