"""Real servers on loopback for end-to-end tests: the fake upstream and the gateway.

Both run as separate processes started through the ``claudestore`` CLI, exactly as an
operator would start them; the gateway's API key is made with ``claudestore keys create``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

CLI = [sys.executable, "-m", "claudestore.cli.main"]
UPSTREAM_KEY = "upstream-secret-key-0123456789"
ADMIN_KEY = "admin-secret-key-for-tests-0123456789"
KEY_PATTERN = re.compile(r"sk-cs-[A-Za-z0-9_-]{20,}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} before answering {url}:\n{log.read_text()}"
            )
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not answer {url} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class FakeUpstream:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, limit: int = 20) -> list[dict]:
        return httpx.get(f"{self.url}/_fake/requests", params={"limit": limit}).json()

    def last_request(self) -> dict:
        return self.requests(1)[-1]


def start_fake_upstream(tmp: Path) -> FakeUpstream:
    port = free_port()
    log = tmp / "fake-upstream.log"
    proc = subprocess.Popen(
        [*CLI, "fake-upstream", "--port", str(port), "--api-key", UPSTREAM_KEY],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/_fake/requests", proc, log)
    return FakeUpstream(proc, port)


def gateway_config(upstream: FakeUpstream, database_url: str, **extra: Any) -> dict:
    return {
        **extra,
        # No starter plan: tests that list plans expect exactly the ones they made.
        "web": {"seed_free_plan": False, **extra.get("web", {})},
        # Failed-authentication throttling (20 per address and minute by default) would turn the
        # deliberate 401s of the e2e and fuzz suites, all from 127.0.0.1, into 429s: counted
        # but never reached here. tests/test_security_limits.py tests it with the defaults.
        "server": {"auth_failures": {"limit": 1_000_000}, **extra.get("server", {})},
        "admin": {"api_key": ADMIN_KEY},
        "database": {"url": database_url},
        "upstreams": [
            {
                "name": "fake-anthropic",
                "type": "anthropic",
                "base_url": upstream.url,
                "api_key": UPSTREAM_KEY,
            },
            {
                "name": "fake-openai",
                "type": "openai",
                "base_url": upstream.url + "/v1",
                "api_key": UPSTREAM_KEY,
            },
        ],
        "models": [
            {
                "id": "claude-test",
                "upstream": "fake-anthropic",
                "upstream_model": "fake-claude",
                "aliases": ["claude-test-alias"],
                "display_name": "Claude Test (fake upstream)",
            },
            {
                "id": "claude-budget",
                "upstream": "fake-anthropic",
                "upstream_model": "fake-claude",
                "display_name": "Claude Test with its own price (metering tests)",
            },
            {
                "id": "claude-via-openai",
                "upstream": "fake-openai",
                "upstream_model": "fake-claude-on-openai",
                "display_name": "Claude-named model on an OpenAI-format upstream",
            },
            {
                "id": "gpt-test",
                "upstream": "fake-openai",
                "upstream_model": "fake-gpt",
                "display_name": "GPT Test (fake upstream)",
            },
        ],
    }


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    key: str
    config_path: Path
    database_url: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [*CLI, *args, "--config", str(self.config_path)], check=True, capture_output=True, text=True
        )
        return out.stdout


def create_key(config_path: Path, name: str = "test") -> str:
    out = subprocess.run(
        [*CLI, "keys", "create", name, "--config", str(config_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    match = KEY_PATTERN.search(out.stdout)
    assert match, f"no key in `keys create` output: {out.stdout!r}"
    return match.group(0)


def start_gateway(
    tmp: Path,
    upstream: FakeUpstream,
    database_url: str,
    workers: int = 1,
    *,
    name: str = "gateway",
    **extra: Any,
) -> Gateway:
    """Start a gateway process; ``extra`` top-level config sections (e.g. ``limits``) are merged in."""
    config_path = tmp / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(gateway_config(upstream, database_url, **extra)))
    key = create_key(config_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDESTORE_DATABASE_URL")}
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
    return Gateway(proc, port, key, config_path, database_url, log)


@contextlib.contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn (httptools, as the gateway) in a thread on loopback;
    yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", loop="asyncio",
                            lifespan="off", log_level="critical")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
