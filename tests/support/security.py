"""The security review's gateway (``sec``) and the helpers its tests share.

``sec`` is a gateway on SQLite, ``--log-level debug`` with its output captured to a file, a
secret key pepper, a password-like admin key, and extra models whose upstreams misbehave —
``claude-wrongkey`` / ``gpt-wrongkey`` (the fake upstream with a wrong upstream key, so it
answers 401), ``claude-quoting`` / ``gpt-quoting`` (a stub upstream that quotes the key it
received in its 401 message, as several OpenAI-compatible servers do) and ``claude-closed`` (an
upstream port nobody listens on). ``sec_json`` is the same gateway with ``--log-format json``,
started only by the tests that ask for it. Load the fixtures with::

    pytest_plugins = ["tests.support.security"]

in the test module. Both are module-scoped: each test module gets gateways of its own.

PYTEST_DONT_REWRITE: the test modules import this module before pytest loads it as their plugin,
too late for assertion rewriting (pytest would warn); its asserts carry their own messages.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import itertools
import json
import os
import secrets
import subprocess
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.servers import (
    CLI,
    KEY_PATTERN,
    UPSTREAM_KEY,
    FakeUpstream,
    free_port,
    gateway_config,
    stop,
    wait_http,
)

ADMIN_PASSWORD = "Tr0ub4dor&3-correct-horse-battery-staple-42"  # password-like admin key
PEPPER = "sec-test-pepper-" + "p" * 24
WRONG_UPSTREAM_KEY = "wrong-upstream-key-ZYXWVU9876543210"
PROMPT_CANARY = "PROMPT-CANARY-7f3a9c1e-do-not-log"


# -- the gateway under test -----------------------------------------------------------------------


class QuotingUpstream(BaseHTTPRequestHandler):
    """A misbehaving upstream: every POST is a 401 whose message quotes the key it was sent."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.endswith("/chat/completions"):
            token = (self.headers.get("authorization") or "")[7:]
            body = {
                "error": {
                    "message": f"Incorrect API key provided: {token}. You can find your API key at https://example.invalid.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        else:
            key = self.headers.get("x-api-key") or ""
            body = {
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key: {key}"},
            }
        raw = json.dumps(body).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Sec:
    proc: subprocess.Popen[bytes]
    port: int
    key: str  # an operator key (no account)
    log: Path
    database: Path
    closed_port: int
    responses: list[httpx.Response] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, source: str | None = None, **kwargs: Any) -> httpx.Client:
        """A client on a loopback address of its own (``source``, default a fresh one): failed
        authentications are throttled per address, so one test's deliberate failures never
        throttle another's."""

        def keep(response: httpx.Response) -> None:
            response.read()
            self.responses.append(response)

        return httpx.Client(
            base_url=self.url,
            timeout=60,
            event_hooks={"response": [keep]},
            transport=httpx.HTTPTransport(local_address=source or fresh_source()),
            **kwargs,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


_SOURCES = itertools.count()


def fresh_source() -> str:
    """A loopback address no other client in this test run uses (127.0.1.1, 127.0.1.2, ...; all
    of 127/8 is local on Linux). 127.0.0.x is left for the proxy tests."""
    n = next(_SOURCES)
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def client_from(url: str, source: str, **kwargs: Any) -> httpx.Client:
    return httpx.Client(
        base_url=url, timeout=60, transport=httpx.HTTPTransport(local_address=source), **kwargs
    )


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDESTORE_DATABASE_URL")}
    env["CLAUDESTORE_KEY_PEPPER"] = PEPPER
    return env


@pytest.fixture(scope="module")
def quoting_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), QuotingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _supports_json_logs() -> bool:
    out = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, check=True)
    return "--log-format" in out.stdout


def _prepare(tmp: Path, fake_upstream: FakeUpstream, quoting_upstream: str) -> tuple[Path, Path, int]:
    """Config (with the extra misbehaving upstreams of the module docstring), database, closed port."""
    database = tmp / "claudestore.db"
    closed_port = free_port()
    config = gateway_config(fake_upstream, f"sqlite+aiosqlite:///{database}")
    config["admin"] = {"api_key": ADMIN_PASSWORD}
    config["server"] = {}  # the defaults, failed-authentication throttling included (point 6)
    extra_upstreams = [
        ("fake-anthropic-wrongkey", "anthropic", fake_upstream.url, WRONG_UPSTREAM_KEY),
        ("fake-openai-wrongkey", "openai", fake_upstream.url + "/v1", WRONG_UPSTREAM_KEY),
        ("quoting-anthropic", "anthropic", quoting_upstream, UPSTREAM_KEY),
        ("quoting-openai", "openai", quoting_upstream + "/v1", UPSTREAM_KEY),
        ("closed", "anthropic", f"http://127.0.0.1:{closed_port}", UPSTREAM_KEY),
    ]
    for name, kind, base_url, key in extra_upstreams:
        config["upstreams"].append({"name": name, "type": kind, "base_url": base_url, "api_key": key})
    for model, upstream in [
        ("claude-wrongkey", "fake-anthropic-wrongkey"),
        ("gpt-wrongkey", "fake-openai-wrongkey"),
        ("claude-quoting", "quoting-anthropic"),
        ("gpt-quoting", "quoting-openai"),
        ("claude-closed", "closed"),
    ]:
        config["models"].append({"id": model, "upstream": upstream, "upstream_model": "fake-claude"})
    config_path = tmp / "security.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return config_path, database, closed_port


def _start_sec(
    tmp_path_factory: pytest.TempPathFactory,
    fake_upstream: FakeUpstream,
    quoting_upstream: str,
    log_format: str,
) -> Iterator[Sec]:
    """A gateway at ``--log-level debug`` with ``log_format`` logs (``text`` is the default, no flag)."""
    env = _cli_env()
    config_path, database, closed_port = _prepare(
        tmp_path_factory.mktemp(f"security-{log_format}"), fake_upstream, quoting_upstream
    )
    made = subprocess.run(
        [*CLI, "keys", "create", "operator", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=120,
    )
    match = KEY_PATTERN.search(made.stdout)
    assert made.returncode == 0 and match, made.stdout
    port = free_port()
    log = config_path.parent / "security.log"
    command = [*CLI, "serve", "--config", str(config_path), "--port", str(port), "--log-level", "debug"]
    if log_format != "text":
        command += ["--log-format", log_format]
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield Sec(proc, port, match.group(0), log, database, closed_port)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def sec(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream, quoting_upstream: str
) -> Iterator[Sec]:
    """The gateway most tests use: default (text) logs at debug level."""
    yield from _start_sec(tmp_path_factory, fake_upstream, quoting_upstream, "text")


@pytest.fixture(scope="module")
def sec_json(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream, quoting_upstream: str
) -> Iterator[Sec]:
    """The same gateway with ``--log-format json`` (structured logs, one line per request)."""
    if not _supports_json_logs():
        pytest.skip("this gateway has no --log-format json")
    yield from _start_sec(tmp_path_factory, fake_upstream, quoting_upstream, "json")


# -- accounts and requests ------------------------------------------------------------------------


@dataclass
class Customer:
    account_id: int
    key: str
    key_id: int
    name: str


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_PASSWORD}"}


def make_customer(http: httpx.Client, label: str) -> Customer:
    """An account on a plan with credit and one key, made through the admin API."""
    name = f"{label}-{secrets.token_hex(3)}"
    h = admin_headers()
    for model in ("claude-test", "gpt-test"):
        http.put(f"/admin/prices/{model}", json={"input": "3", "output": "15"}, headers=h).raise_for_status()
    http.post("/admin/plans", json={"name": name}, headers=h).raise_for_status()
    account = http.post("/admin/accounts", json={"name": name}, headers=h).json()
    http.post(
        f"/admin/accounts/{account['id']}/subscription", json={"plan": name}, headers=h
    ).raise_for_status()
    http.post(f"/admin/accounts/{account['id']}/credit", json={"usd": "10"}, headers=h).raise_for_status()
    key = http.post(f"/admin/accounts/{account['id']}/keys", json={"name": name}, headers=h).json()
    return Customer(account["id"], key["key"], key["id"], name)


def message(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}], **extra}


def anthropic_auth(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def random_key() -> str:
    """A well-formed customer key that matches no stored key."""
    return "sk-cs-" + secrets.token_urlsafe(32)


async def flood(
    url: str, path: str, headers_for: Any, count: int, concurrency: int, source: str | None = None
) -> Counter[int]:
    """``count`` GETs of ``path``, ``concurrency`` at a time, each with ``headers_for()``: statuses."""
    statuses: Counter[int] = Counter()
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=concurrency), local_address=source
    )
    async with httpx.AsyncClient(base_url=url, timeout=60, transport=transport) as http:
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                resp = await http.get(path, headers=headers_for())
                statuses[resp.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def compares_with_eq(func: Any, names: set[str]) -> list[str]:
    """``==`` / ``!=`` comparisons in ``func`` whose operands mention one of ``names``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            mentioned = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
                n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
            }
            text = ast.unparse(node)
            if mentioned & names and not text.startswith("ApiKey."):  # ApiKey.x == y is SQL, not Python
                found.append(text)
    return found
