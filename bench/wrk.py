"""Drive ``wrk`` (Debian package ``wrk``) with a generated Lua script for a POST request.

The script sets the method, headers and body, and its ``done()`` prints the summary and
latency percentiles as one JSON line, so nothing of wrk's human output is parsed.
wrk measures the whole response (for a stream: until its last byte).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from procs import pin_prefix

INSTALL_HINT = (
    "wrk is not installed. Install it with `apt-get install -y wrk` (Debian/Ubuntu package "
    "`wrk`), or run with `--loadgen python` to use only the bundled Python load generator "
    "(lower ceiling: it saturates near a few thousand requests/s per core, so it understates "
    "the direct upstream's throughput)."
)

DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "?"


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def lua_script(headers: dict[str, str], body: bytes) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    for name, value in headers.items():
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    return "\n".join(lines) + "\n" + DONE


def run(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    connections: int,
    duration: float,
    threads: int,
    cpus: tuple[int, ...],
    workdir: Path,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Run wrk; return requests, rps, errors and latency percentiles in milliseconds."""
    script = workdir / "wrk-request.lua"
    script.write_text(lua_script(headers, body))
    threads = max(1, min(threads, connections))
    seconds = max(1, round(duration))
    cmd = [
        *pin_prefix(cpus),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={max(1, round(timeout))}s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout + 30)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line[len("WRK_JSON ") :])
    elapsed = raw["duration_us"] / 1e6
    errors = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    ok = raw["requests"] - raw["status"]
    return {
        "tool": "wrk",
        "connections": connections,
        "requests": raw["requests"],
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "elapsed_s": elapsed,
        "rps": ok / elapsed if elapsed else 0.0,
        # No response completed (a server still busy with an earlier load): no latency to report.
        "latency_ms": {
            "p50": raw["p50"] / 1000,
            "p90": raw["p90"] / 1000,
            "p99": raw["p99"] / 1000,
            "p99.9": raw["p999"] / 1000,
            "max": raw["max"] / 1000,
            "mean": raw["mean"] / 1000,
        }
        if raw["requests"]
        else {},
        "bytes": raw["bytes"],
    }
