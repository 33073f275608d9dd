"""Security review (issue 9): one test per point, each failing when the property breaks.

Most tests use this module's own gateway (``sec``): SQLite, ``--log-level debug`` with its
output captured to a file, a secret key pepper, a password-like admin key, and extra models
whose upstreams misbehave — ``claude-wrongkey`` / ``gpt-wrongkey`` (the fake upstream with a
wrong upstream key, so it answers 401), ``claude-quoting`` / ``gpt-quoting`` (a stub upstream
that quotes the key it received in its 401 message, as several OpenAI-compatible servers do)
and ``claude-closed`` (an upstream port nobody listens on). Gaps found are pinned as strict
xfail tests whose reason starts with ``BUG:`` or ``GAP:``; SECURITY.md maps every point here.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hmac
import inspect
import itertools
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import textwrap
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from claudestore.admission.auth_throttle import AuthThrottle
from claudestore.api import admin as admin_module
from claudestore.api.admin import AdminAuth, admin_app
from claudestore.core.errors import AuthenticationFailed, RateLimited
from claudestore.storage import keys as keys_module
from claudestore.storage.keys import hash_key
from tests.support.envelopes import anthropic_error, error_of, openai_error, rss_kib
from tests.support.servers import (
    ADMIN_KEY,
    CLI,
    KEY_PATTERN,
    UPSTREAM_KEY,
    FakeUpstream,
    Gateway,
    create_key,
    free_port,
    gateway_config,
    start_gateway,
    stop,
    wait_http,
)

ADMIN_PASSWORD = "Tr0ub4dor&3-correct-horse-battery-staple-42"  # password-like admin key
PEPPER = "sec-test-pepper-" + "p" * 24
WRONG_UPSTREAM_KEY = "wrong-upstream-key-ZYXWVU9876543210"
PROMPT_CANARY = "PROMPT-CANARY-7f3a9c1e-do-not-log"
MAX_BODY = 32 * 1024 * 1024  # server.max_body_bytes default


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
    """A loopback address no other client in this module uses (127.0.1.1, 127.0.1.2, ...; all of
    127/8 is local on Linux). 127.0.0.x is left for the proxy tests."""
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


@pytest.fixture(scope="module")
def sec_gateways(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream, quoting_upstream: str
) -> Iterator[dict[str, Sec]]:
    """Gateways at ``--log-level debug``: the default text logs, and ``--log-format json`` when this
    version has it (structured logs, one line per request). Started side by side."""
    formats = ["text", "json"] if _supports_json_logs() else ["text"]
    env = _cli_env()
    prepared = {
        f: _prepare(tmp_path_factory.mktemp(f"security-{f}"), fake_upstream, quoting_upstream)
        for f in formats
    }
    makers = {
        f: subprocess.Popen(
            [*CLI, "keys", "create", "operator", "--config", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for f, (config_path, _, _) in prepared.items()
    }
    started: dict[str, tuple[subprocess.Popen[bytes], int, str, Path]] = {}
    for f, (config_path, _, _) in prepared.items():
        out, _ = makers[f].communicate(timeout=120)
        match = KEY_PATTERN.search(out)
        assert makers[f].returncode == 0 and match, out
        port = free_port()
        log = config_path.parent / "security.log"
        command = [*CLI, "serve", "--config", str(config_path), "--port", str(port), "--log-level", "debug"]
        if f != "text":
            command += ["--log-format", f]
        proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
        started[f] = (proc, port, match.group(0), log)
    gateways = {}
    try:
        for f, (proc, port, key, log) in started.items():
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
            _, database, closed_port = prepared[f]
            gateways[f] = Sec(proc, port, key, log, database, closed_port)
        yield gateways
    finally:
        for proc, *_ in started.values():
            stop(proc)


@pytest.fixture(scope="module")
def sec(sec_gateways: dict[str, Sec]) -> Sec:
    """The gateway most tests use: default (text) logs at debug level."""
    return sec_gateways["text"]


@pytest.fixture(scope="module")
def sec_json(sec_gateways: dict[str, Sec]) -> Sec:
    if "json" not in sec_gateways:
        pytest.skip("this gateway has no --log-format json")
    return sec_gateways["json"]


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


# -- 1. keys hashed at rest, compared in constant time -------------------------------------------


def _database_bytes(database: Path) -> bytes:
    """The SQLite file and its journal files, as stored on disk."""
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))


def _database_text(database: Path) -> str:
    """Every value of every table, as text."""
    with sqlite3.connect(database) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"'))


def test_keys_and_codes_are_hashed_at_rest(sec: Sec) -> None:
    with sec.client() as http:
        customer = make_customer(http, "hashed")
        made = http.post("/admin/codes", json={"credit_usd": "1", "count": 1}, headers=admin_headers())
        assert made.status_code == 201, made.text
        code = made.json()["data"][0]["code"]
        # Used once, so last_used_at and the ledger are written too (and prompts are not).
        used = http.post(
            "/v1/messages", json=message("claude-test", PROMPT_CANARY), headers=anthropic_auth(customer.key)
        )
        assert used.status_code == 200
    time.sleep(0.3)  # ledger flush
    stored = _database_bytes(sec.database)
    text = _database_text(sec.database)
    for raw in (sec.key, customer.key):
        assert raw.encode() not in stored and raw not in text, "a raw API key is stored"
        assert raw[:14] in text, "the visible prefix is stored"  # sk-cs- + 8 characters
        assert hash_key(raw, pepper=PEPPER.encode()) in text, (
            "the key is stored as HMAC-SHA256 under the pepper"
        )
        assert hash_key(raw, pepper=keys_module.DEFAULT_KEY_PEPPER.encode()) not in text
    compact = code.replace("-", "")
    assert code not in text and compact not in text and code.encode() not in stored, (
        "a raw redeem code is stored"
    )
    assert ADMIN_PASSWORD not in text and ADMIN_PASSWORD.encode() not in stored
    assert PROMPT_CANARY not in text and PROMPT_CANARY.encode() not in stored, "a prompt is stored"


def _compares_with_eq(func: Any, names: set[str]) -> list[str]:
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


async def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin key and stored key hashes are compared with ``hmac.compare_digest`` (checked by
    a spy on the real code paths), and those functions hold no ``==`` on key material."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    auth = AdminAuth(app=None, db=None, admin_key=ADMIN_PASSWORD)  # type: ignore[arg-type]
    await auth.check(ADMIN_PASSWORD)
    assert calls and calls[-1] == (ADMIN_PASSWORD.encode(), ADMIN_PASSWORD.encode())
    calls.clear()
    with pytest.raises(AuthenticationFailed):
        await auth.check("not-the-admin-key")
    assert calls, "a wrong admin key was not compared with hmac.compare_digest"

    digest = hash_key("sk-cs-" + "A" * 43)

    class Session:
        async def scalar(self, statement: Any) -> Any:
            return SimpleNamespace(key_hash=digest)

    calls.clear()
    assert await keys_module.find_key_by_hash(Session(), digest) is not None  # type: ignore[arg-type]
    assert calls == [(digest, digest)], "stored key hashes are not compared with hmac.compare_digest"

    assert _compares_with_eq(AdminAuth.check, {"raw", "key"}) == []
    assert _compares_with_eq(keys_module.find_key_by_hash, {"key_hash"}) == []
    assert "hmac.compare_digest" in inspect.getsource(admin_module)


# -- 2. keys, passwords and prompts never in logs, errors or metrics ------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_and_prompts_never_logged_or_echoed(request: pytest.FixtureRequest, log_format: str) -> None:
    """Successes and failures of every kind with a known key, a password-like admin key and a
    prompt canary; then the debug log (both formats) and every response are searched for them."""
    sec: Sec = request.getfixturevalue("sec" if log_format == "text" else "sec_json")
    with sec.client() as http:
        customer = make_customer(http, "logs")
        near_miss = customer.key[:-1] + ("A" if customer.key[-1] != "A" else "B")
        prompt = f"Please keep this secret: {PROMPT_CANARY} [[fake tokens=3]]"
        for model in ("claude-test", "gpt-test"):
            for stream in (False, True):
                ok = http.post(
                    "/v1/messages",
                    json=message(model, prompt, stream=stream),
                    headers=anthropic_auth(customer.key),
                )
                assert ok.status_code == 200
                ok = http.post(
                    "/v1/chat/completions",
                    json=message(model, prompt, stream=stream),
                    headers=bearer(customer.key),
                )
                assert ok.status_code == 200
        failures = [
            ("/v1/messages", message("claude-test", prompt), anthropic_auth(near_miss)),  # 401
            ("/v1/messages", message("claude-test", prompt), {"x-api-key": customer.key + " extra"}),
            ("/v1/chat/completions", message("gpt-test", prompt), bearer("Basic " + customer.key)),
            (
                "/v1/messages",
                message("claude-test", prompt, max_tokens="many"),
                anthropic_auth(customer.key),
            ),  # 400
            ("/v1/messages", message("no-such-model", prompt), anthropic_auth(customer.key)),  # 404
            (
                "/v1/messages",
                message("claude-test", prompt + " [[fake status=400]]"),
                anthropic_auth(customer.key),
            ),
            ("/v1/messages", message("claude-wrongkey", prompt), anthropic_auth(customer.key)),
            ("/v1/chat/completions", message("gpt-wrongkey", prompt), bearer(customer.key)),
            ("/v1/messages", message("claude-closed", prompt), anthropic_auth(customer.key)),
            ("/v1/messages/count_tokens", message("claude-test", prompt), anthropic_auth(near_miss)),
            ("/v1/messages/count_tokens", message("gpt-test", prompt), anthropic_auth(customer.key)),
        ]
        deep = message("claude-test", prompt)
        deep["tools"] = [{"name": "t", "input_schema": {"x": json.loads("[" * 300 + "]" * 300)}}]
        failures.append(("/v1/messages", deep, anthropic_auth(customer.key)))  # a logged 500 (known bug)
        for path, body, headers in failures:
            http.post(path, json=body, headers=headers)
        http.post(
            "/v1/messages",
            content=b'{"model": "claude-test", "messages": [' + PROMPT_CANARY.encode(),
            headers=anthropic_auth(customer.key),
        )
        # Admin API: wrong passwords, the right one, a customer key.
        for wrong in (ADMIN_PASSWORD[:-1], ADMIN_PASSWORD + "x", ADMIN_PASSWORD.upper()):
            assert http.get("/admin/accounts", headers=bearer(wrong)).status_code == 401
        assert http.get("/admin/accounts", headers={"x-api-key": ADMIN_PASSWORD}).status_code == 200
        assert http.get("/admin/accounts", headers=bearer(customer.key)).status_code == 403
        # Customer API, with its key and a near miss.
        assert http.get("/v1/account/requests", headers=bearer(customer.key)).status_code == 200
        assert http.get("/v1/account", headers=bearer(near_miss)).status_code == 401
    time.sleep(0.5)  # let the ledger flush and the log catch up
    log = sec.log_text()
    assert "could not be reached" in log, "the failure paths were not exercised (nothing was logged)"
    secrets_ = {
        "customer key": customer.key,
        "near-miss key": near_miss,
        "operator key": sec.key,
        "admin password": ADMIN_PASSWORD,
        "upstream key": UPSTREAM_KEY,
        "wrong upstream key": WRONG_UPSTREAM_KEY,
        "prompt": PROMPT_CANARY,
        "key pepper": PEPPER,
    }
    for what, value in secrets_.items():
        assert value not in log, f"the {what} appears in the gateway's log"
    for resp in sec.responses:
        if resp.status_code >= 400:
            text = resp.text + json.dumps(dict(resp.headers))
            for what, value in secrets_.items():
                assert value not in text, (
                    f"the {what} appears in an error response: {resp.status_code} {text[:300]}"
                )


def test_metrics_do_not_leak(sec: Sec) -> None:
    with sec.client() as http:
        resp = http.get("/metrics", headers=admin_headers())
        if resp.status_code == 404:
            pytest.skip("the gateway has no /metrics endpoint yet")
        for value in (sec.key, ADMIN_PASSWORD, UPSTREAM_KEY, PROMPT_CANARY):
            assert value not in resp.text


# -- 3. request body and header size limits -------------------------------------------------------


def test_request_body_limit(sec: Sec) -> None:
    """Above server.max_body_bytes: 413 in the caller's shape, whether the size is declared
    (Content-Length) or only discovered while reading (chunked)."""
    too_big = b'{"pad": "' + b"x" * MAX_BODY + b'"}'

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(too_big), 1 << 20):
            yield too_big[i : i + (1 << 20)]

    with sec.client() as http:
        resp = http.post("/v1/messages", content=too_big, headers=anthropic_auth(sec.key))
        assert resp.status_code == 413 and anthropic_error(resp)["type"] == "request_too_large"
        resp = http.post("/v1/chat/completions", content=chunked(), headers=bearer(sec.key))
        assert resp.status_code == 413 and openai_error(resp)["code"] == "request_too_large"
        resp = http.post("/v1/messages/count_tokens", content=too_big, headers=anthropic_auth(sec.key))
        assert resp.status_code == 413 and anthropic_error(resp)["type"] == "request_too_large"
        # A body at the limit is read (and refused for what it says, not for its size).
        resp = http.post(
            "/v1/messages", content=b" " * (MAX_BODY - 2) + b"{}", headers=anthropic_auth(sec.key)
        )
        assert resp.status_code == 400
    assert sec.proc.poll() is None


def _peak_rss_during(pid: int, work: Any) -> int:
    """Largest RSS growth (KiB) of ``pid`` while ``work()`` runs, sampled every 5 ms."""
    base = rss_kib(pid)
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return peak - base


def test_customer_api_rejects_oversized_anonymous_uploads_without_buffering(sec: Sec) -> None:
    size = 96 * 1024 * 1024

    def body() -> Iterator[bytes]:
        for _ in range(size // (1 << 20)):
            yield b" " * (1 << 20)

    result: list[httpx.Response] = []

    def upload() -> None:
        # The server may close the connection early: that is fine.
        with httpx.Client(base_url=sec.url, timeout=60) as http, contextlib.suppress(httpx.HTTPError):
            result.append(
                http.post("/v1/account/redeem", content=body(), headers={"content-type": "application/json"})
            )

    growth = _peak_rss_during(sec.proc.pid, upload)
    assert sec.proc.poll() is None
    assert growth < 32 * 1024, f"RSS grew by {growth} KiB while receiving an anonymous 96 MiB body"
    if result:
        assert result[0].status_code in (401, 413), result[0].text


def test_request_header_limit(sec: Sec) -> None:
    auth = [f"x-api-key: {sec.key}", "anthropic-version: 2023-06-01", "content-type: application/json"]
    body = json.dumps(message("claude-test", "hi")).encode()
    for extra in (["x-padding: " + "a" * (1024 * 1024)], [f"x-h{i}: {'v' * 100}" for i in range(5_000)]):
        answer = _raw_request(sec.port, [*auth, *extra], body)
        assert answer, "no answer"
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]


def _raw_request(port: int, head_lines: list[str], body: bytes) -> bytes:
    """One request over a raw socket (httpx itself is quadratic in the number of headers)."""
    head = "".join(f"{line}\r\n" for line in head_lines)
    request = f"POST /v1/messages HTTP/1.1\r\nhost: sec\r\ncontent-length: {len(body)}\r\n{head}connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # Refused before everything was sent: an acceptable answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request.encode("latin-1") + body)
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def test_huge_headers_do_not_crash_the_gateway(sec: Sec) -> None:
    """Whatever the answer to megabytes of headers (one value, thousands of headers, a huge key),
    the gateway stays up, answers below 500 (or closes), and keeps serving."""
    auth = [f"x-api-key: {sec.key}", "anthropic-version: 2023-06-01", "content-type: application/json"]
    body = json.dumps(message("claude-test", "hi")).encode()
    for extra in (
        ["x-padding: " + "a" * (8 * 1024 * 1024)],
        [f"x-h{i}: {'v' * 100}" for i in range(20_000)],
        ["authorization: Bearer " + "k" * (4 * 1024 * 1024)],
    ):
        answer = _raw_request(sec.port, [*auth, *extra], body)
        if answer:
            assert int(answer.split(b" ", 2)[1]) < 500, answer[:300]
    assert sec.proc.poll() is None
    with sec.client() as http:
        assert http.get("/healthz").status_code == 200


# -- 4. one customer can never read another's data ------------------------------------------------


def test_cross_account_isolation(sec: Sec) -> None:
    """Customer A tries every /v1/account endpoint with B's ids (keys, ledger rows, account)."""
    with sec.client() as http:
        a = make_customer(http, "alice")
        b = make_customer(http, "bob")
        # B uses the gateway and makes a second key; A makes one request.
        b_request_ids = set()
        for model in ("claude-test", "gpt-test"):
            r = http.post(
                "/v1/messages", json=message(model, "bob's secret prompt"), headers=anthropic_auth(b.key)
            )
            assert r.status_code == 200
            b_request_ids.add(r.headers["request-id"])
        b2 = http.post("/v1/account/keys", json={"name": "bob-second"}, headers=bearer(b.key))
        assert b2.status_code == 201, b2.text
        b_key_ids = {b.key_id, b2.json()["id"]}
        r = http.post("/v1/messages", json=message("claude-test", "alice"), headers=anthropic_auth(a.key))
        assert r.status_code == 200
        a_request_id = r.headers["request-id"]
        time.sleep(0.3)  # ledger flush
        b_rows = http.get(
            "/admin/usage/requests", params={"account_id": b.account_id}, headers=admin_headers()
        ).json()["data"]
        assert {row["request_id"] for row in b_rows} == b_request_ids
        b_row_ids = {row["id"] for row in b_rows}

        def as_a(method: str, path: str, **kwargs: Any) -> httpx.Response:
            resp = http.request(method, path, headers=bearer(a.key), **kwargs)
            text = resp.text
            assert b.key not in text and b.name not in text and "bob" not in text, (path, text[:300])
            assert not any(rid in text for rid in b_request_ids), (path, text[:300])
            return resp

        overview = as_a("GET", "/v1/account", params={"account_id": b.account_id}).json()
        assert overview["account"]["id"] == a.account_id and overview["key_id"] == a.key_id
        keys = as_a("GET", "/v1/account/keys", params={"account_id": b.account_id}).json()["data"]
        assert {k["id"] for k in keys} == {a.key_id}
        for group_by in (None, "key", "model", "day"):
            params: dict[str, Any] = {"account_id": b.account_id, "key_id": b.key_id}
            if group_by:
                params["group_by"] = group_by
            usage = as_a("GET", "/v1/account/usage", params=params).json()
            assert usage["total"]["requests"] == 1, usage
            if group_by == "key":
                assert {row["key_id"] for row in usage["data"]} == {a.key_id}
        for before_id in (None, max(b_row_ids) + 1, *b_row_ids):
            params = {"limit": 500, "account_id": b.account_id, "key_id": b.key_id}
            if before_id is not None:
                params["before_id"] = before_id
            rows = as_a("GET", "/v1/account/requests", params=params).json()["data"]
            assert {row["request_id"] for row in rows} <= {a_request_id}, rows
        for key_id in sorted(b_key_ids):
            resp = as_a("DELETE", f"/v1/account/keys/{key_id}")
            assert resp.status_code == 404 and anthropic_error(resp)["type"] == "not_found_error"
        # The body cannot name another account either.
        resp = as_a("POST", "/v1/account/keys", json={"name": "x", "account_id": b.account_id})
        assert resp.status_code == 400
        # B's keys still work: A's attempts changed nothing.
        assert http.get("/v1/account", headers=bearer(b.key)).status_code == 200
        assert http.get("/v1/account", headers=bearer(b2.json()["key"])).status_code == 200
        # A code B already redeemed says so without naming B.
        code = http.post("/admin/codes", json={"credit_usd": "1"}, headers=admin_headers()).json()["data"][0][
            "code"
        ]
        assert http.post("/v1/account/redeem", json={"code": code}, headers=bearer(b.key)).status_code == 200
        resp = as_a("POST", "/v1/account/redeem", json={"code": code})
        assert 400 <= resp.status_code < 500


# -- 5. admin routes refuse customer keys and anonymous callers -----------------------------------


def _admin_routes() -> list[tuple[str, str]]:
    app = admin_app(None, admin_key=ADMIN_PASSWORD)  # type: ignore[arg-type]
    found = []
    for route in app.routes:
        path = route.path.replace("{account_id:int}", "1").replace("{key_id:int}", "1")  # type: ignore[attr-defined]
        path = path.replace("{plan_id:int}", "1").replace("{user_id:int}", "1").replace("{code_id:int}", "1")
        path = path.replace("{model:path}", "claude-test")
        found.extend((method, path) for method in sorted(route.methods or ()) if method != "HEAD")  # type: ignore[attr-defined]
    return found


def test_admin_routes_refuse_customer_keys_and_anonymous_callers(sec: Sec) -> None:
    routes = _admin_routes()
    assert len(routes) >= 30, routes
    with sec.client() as http:
        customer = make_customer(http, "not-admin")
        callers = {
            "customer key": (bearer(customer.key), 403, "permission_error"),
            "customer key in x-api-key": ({"x-api-key": customer.key}, 403, "permission_error"),
            "operator key": (bearer(sec.key), 403, "permission_error"),
            "anonymous": ({}, 401, "authentication_error"),
            "wrong admin key": (bearer(ADMIN_PASSWORD + "!"), 401, "authentication_error"),
            "basic auth": ({"authorization": "Basic " + ADMIN_PASSWORD}, 401, "authentication_error"),
        }
        for method, path in [*routes, ("GET", "/admin/nowhere"), ("GET", "/admin/")]:
            # Each route from an address of its own: its 4 refused keys stay under the
            # failed-authentication limit (point 6), which this test is not about.
            with sec.client() as route_http:
                for who, (headers, status, kind) in callers.items():
                    resp = route_http.request(
                        method, path, headers=headers, json={} if method in ("POST", "PATCH", "PUT") else None
                    )
                    assert resp.status_code == status, (who, method, path, resp.text[:200])
                    assert anthropic_error(resp)["type"] == kind
        # Nothing was changed by the refused calls.
        assert http.get("/admin/accounts/1", headers=admin_headers()).status_code == 200


CUSTOMER_ROUTES = [
    ("GET", "/v1/account"),
    ("GET", "/v1/account/usage"),
    ("GET", "/v1/account/requests"),
    ("GET", "/v1/account/keys"),
    ("DELETE", "/v1/account/keys/1"),
    ("POST", "/v1/account/keys"),
    ("POST", "/v1/account/redeem"),
]


def test_customer_routes_refuse_anonymous_and_operator_callers(sec: Sec) -> None:
    """With a well-formed body: 401 without a key, 403 for keys that belong to no account."""
    bodies = {
        "/v1/account/keys": {"name": "x"},
        "/v1/account/redeem": {"code": "CS-AAAA-AAAA-AAAA-AAAA-AAAA"},
    }
    with sec.client() as http:
        for method, path in CUSTOMER_ROUTES:
            body = bodies.get(path) if method == "POST" else None
            for headers, status in (
                ({}, 401),
                (bearer("sk-cs-" + "A" * 43), 401),
                (bearer(ADMIN_PASSWORD), 401),
                (bearer(sec.key), 403),
            ):
                resp = http.request(method, path, headers=headers, json=body)
                assert resp.status_code == status, (method, path, headers, resp.text[:200])
                anthropic_error(resp)


def test_customer_routes_authenticate_before_validating(sec: Sec) -> None:
    with sec.client() as http:
        for path, body in (
            ("/v1/account/keys", {"bogus": 1}),
            ("/v1/account/redeem", {}),
            ("/v1/account/redeem", None),
        ):
            resp = http.post(path, json=body)
            assert resp.status_code == 401, (path, resp.text[:200])
        for params in ({"group_by": "bogus"}, {"from": "yesterday"}):
            resp = http.get("/v1/account/usage", params=params)
            assert resp.status_code == 401, (params, resp.text[:200])


def test_count_tokens_enforces_the_plan_and_account_state(sec: Sec) -> None:
    with sec.client() as http:
        h = admin_headers()
        name = f"claude-only-{secrets.token_hex(3)}"
        http.post(
            "/admin/plans", json={"name": name, "allowed_models": ["claude-*"]}, headers=h
        ).raise_for_status()
        account = http.post("/admin/accounts", json={"name": name}, headers=h).json()
        http.post(
            f"/admin/accounts/{account['id']}/subscription", json={"plan": name}, headers=h
        ).raise_for_status()
        key = http.post(f"/admin/accounts/{account['id']}/keys", json={"name": name}, headers=h).json()["key"]
        outside = message("gpt-test", "one two three")
        assert http.post("/v1/messages", json=outside, headers=anthropic_auth(key)).status_code == 403
        resp = http.post("/v1/messages/count_tokens", json=outside, headers=anthropic_auth(key))
        assert resp.status_code == 403, f"model outside the plan: {resp.status_code} {resp.text[:200]}"
        http.patch(f"/admin/accounts/{account['id']}", json={"disabled": True}, headers=h).raise_for_status()
        inside = message("claude-test", "one two three")
        assert http.post("/v1/messages", json=inside, headers=anthropic_auth(key)).status_code == 403
        resp = http.post("/v1/messages/count_tokens", json=inside, headers=anthropic_auth(key))
        assert resp.status_code == 403, f"disabled account: {resp.status_code} {resp.text[:200]}"


# -- 6. failed-auth attempts ---------------------------------------------------------------------


def _random_key() -> str:
    return "sk-cs-" + secrets.token_urlsafe(32)


async def _flood(
    url: str, path: str, headers_for: Any, count: int, concurrency: int, source: str | None = None
) -> Counter[int]:
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


def test_failed_auth_flood_keeps_the_gateway_responsive(sec: Sec) -> None:
    """400 distinct well-formed bad keys (each a database miss) and 200 malformed ones, 32 at a
    time, while a good key keeps being served from the same address: never refused, and quickly.
    The flood soon gets 429 (throttled); the good key, which the gateway has seen, does not."""
    with httpx.Client(base_url=sec.url, timeout=30) as http:
        assert http.get("/v1/models", headers=bearer(sec.key)).status_code == 200  # seen before the flood
    latencies: list[float] = []
    errors: list[int] = []
    done = threading.Event()

    def good_client() -> None:
        with httpx.Client(base_url=sec.url, timeout=30) as http:
            while not done.is_set():
                started = time.perf_counter()
                resp = http.get("/v1/models", headers=bearer(sec.key))
                latencies.append(time.perf_counter() - started)
                if resp.status_code != 200:
                    errors.append(resp.status_code)
                time.sleep(0.01)

    watcher = threading.Thread(target=good_client)
    watcher.start()
    try:
        bad = asyncio.run(_flood(sec.url, "/v1/models", lambda: bearer(_random_key()), 400, 32))
        malformed = asyncio.run(_flood(sec.url, "/v1/models", lambda: bearer(secrets.token_hex(8)), 200, 32))
    finally:
        done.set()
        watcher.join()
    assert set(bad) <= {401, 429} and set(malformed) <= {401, 429}, (bad, malformed)
    assert not errors, f"the good key was refused during the flood: {errors[:5]}"
    assert len(latencies) >= 5
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    # Generous: the flooding client shares the CPU with the gateway in CI.
    assert p95 < 1.0 and latencies[-1] < 5.0, f"good-key latency during the flood: p95 {p95 * 1000:.0f} ms"
    assert sec.proc.poll() is None


DEFAULT_AUTH_FAILURES = 20  # server.auth_failures.limit, per address and 60 s (the sec gateway's default)


def test_failed_auth_attempts_are_throttled(sec: Sec) -> None:
    """200 wrong keys from one address, 16 at a time, with the default configuration: the first
    20 get 401 (a few more may, already in flight when the 20th failed), the rest 429."""
    source = fresh_source()
    bad = asyncio.run(_flood(sec.url, "/v1/models", lambda: bearer(_random_key()), 200, 16, source=source))
    assert set(bad) <= {401, 429}, bad
    assert DEFAULT_AUTH_FAILURES <= bad[401] < DEFAULT_AUTH_FAILURES + 16, bad
    with sec.client(source) as http:
        resp = http.get("/v1/models", headers=bearer(_random_key()))
    assert resp.status_code == 429, resp.text[:300]
    error = openai_error(resp)
    assert error["code"] == "auth_throttled", error
    assert error["message"].startswith("Too many failed authentication attempts from this address"), error
    assert 1 <= int(resp.headers["retry-after"]) <= 60, dict(resp.headers)


# The throttle's own gateway: a low limit, a trusted proxy and a metrics token.
THROTTLE_LIMIT = 5
THROTTLE_WINDOW = 30
PROXY = "127.0.0.2"  # server.trusted_proxies; uvicorn itself trusts only 127.0.0.1 and ::1
METRICS_TOKEN = "metrics-token-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def thr(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("throttle")
    server = {
        "trusted_proxies": [PROXY],
        "auth_failures": {"limit": THROTTLE_LIMIT, "window_seconds": THROTTLE_WINDOW},
        "metrics_token": METRICS_TOKEN,
    }
    gw = start_gateway(
        tmp, fake_upstream, f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}", name="throttle", server=server
    )
    yield gw
    stop(gw.proc)


def _fail(http: httpx.Client, times: int = THROTTLE_LIMIT, **headers: str) -> None:
    """``times`` wrong keys from ``http``'s address (and ``headers``), each answered 401."""
    for _ in range(times):
        resp = http.get("/v1/models", headers={**bearer(_random_key()), **headers})
        assert resp.status_code == 401, resp.text[:300]


def _status(http: httpx.Client, key: str | None = None, **headers: str) -> int:
    return http.get("/v1/models", headers={**bearer(key or _random_key()), **headers}).status_code


def test_throttled_address_gets_429_in_the_callers_shape(thr: Gateway) -> None:
    """Over the limit, every door answers 429 with retry-after in its own error shape, the admin
    API and /metrics even for the right admin key and metrics token."""
    with client_from(thr.url, fresh_source()) as http:
        for _ in range(THROTTLE_LIMIT):
            resp = http.post(
                "/v1/messages", json=message("claude-test", "hi"), headers=anthropic_auth(_random_key())
            )
            assert resp.status_code == 401 and anthropic_error(resp)["type"] == "authentication_error"
        cases = [
            ("POST", "/v1/messages", anthropic_auth(_random_key()), "anthropic"),
            ("POST", "/v1/messages/count_tokens", anthropic_auth(_random_key()), "anthropic"),
            ("POST", "/v1/chat/completions", bearer(_random_key()), "openai"),
            ("GET", "/v1/models", bearer(_random_key()), "openai"),
            ("GET", "/v1/models/claude-test", anthropic_auth(_random_key()), "anthropic"),
            ("GET", "/v1/account", bearer(_random_key()), "anthropic"),
            ("POST", "/v1/account/keys", bearer(_random_key()), "anthropic"),
            ("GET", "/admin/accounts", bearer(ADMIN_KEY), "anthropic"),
            ("GET", "/admin/upstreams", bearer(ADMIN_KEY), "anthropic"),
            ("GET", "/metrics", bearer(METRICS_TOKEN), "openai"),
        ]
        for method, path, headers, shape in cases:
            body = message("claude-test", "hi") if method == "POST" else None
            resp = http.request(method, path, headers=headers, json=body)
            assert resp.status_code == 429, (path, resp.status_code, resp.text[:300])
            error = error_of(resp, shape)
            assert error["type"] == ("rate_limit_error" if shape == "anthropic" else "requests"), error
            message_ = error["message"]
            assert message_.startswith("Too many failed authentication attempts from this address"), error
            wait = int(resp.headers["retry-after"])
            assert 1 <= wait <= THROTTLE_WINDOW and f"retry after {wait} s" in message_, (
                path,
                dict(resp.headers),
                message_,
            )


def test_throttle_is_per_client_address(thr: Gateway) -> None:
    """Another address is unaffected; behind a trusted proxy each X-Forwarded-For client counts
    on its own (a forged entry on the left changes nothing); an untrusted peer's
    X-Forwarded-For is ignored."""
    with client_from(thr.url, fresh_source()) as attacker:
        _fail(attacker)
        assert _status(attacker) == 429
    with client_from(thr.url, fresh_source()) as neighbour:
        assert _status(neighbour) == 401
        assert _status(neighbour, thr.key) == 200
    with client_from(thr.url, PROXY) as proxy:
        _fail(proxy, **{"x-forwarded-for": "203.0.113.5"})
        assert _status(proxy, **{"x-forwarded-for": "203.0.113.5"}) == 429
        assert _status(proxy, **{"x-forwarded-for": "198.51.100.77, 203.0.113.5"}) == 429
        assert _status(proxy, **{"x-forwarded-for": "203.0.113.6"}) == 401
        assert _status(proxy) == 401  # the proxy's own address was never counted
    with client_from(thr.url, "127.0.0.3") as direct:  # not a trusted proxy: its header is ignored
        statuses = [
            _status(direct, **{"x-forwarded-for": f"198.51.100.{i}"}) for i in range(THROTTLE_LIMIT + 2)
        ]
    assert statuses == [401] * THROTTLE_LIMIT + [429] * 2, statuses


def test_known_key_keeps_working_from_a_throttled_address(thr: Gateway) -> None:
    """A key the gateway already knows (its positive cache) is served from a throttled address,
    and its successes do not reset the count; a key it has not seen yet is refused (429)
    until the window ends, and works from elsewhere."""
    unseen = create_key(thr.config_path, "not-seen-yet")
    with client_from(thr.url, fresh_source()) as http:
        assert _status(http, thr.key) == 200
        _fail(http)
        for _ in range(3):
            ok = http.post("/v1/messages", json=message("claude-test", "hi"), headers=anthropic_auth(thr.key))
            assert ok.status_code == 200, ok.text[:300]
            assert _status(http) == 429
        ok = http.post("/v1/chat/completions", json=message("gpt-test", "hi"), headers=bearer(thr.key))
        assert ok.status_code == 200, ok.text[:300]
        assert _status(http, unseen) == 429
    with client_from(thr.url, fresh_source()) as other:
        assert _status(other, unseen) == 200


def test_metrics_token(thr: Gateway, sec: Sec) -> None:
    """With server.metrics_token, /metrics answers 401 without it (a wrong one counts as a failed
    authentication) and serves the throttle's counters with it; without it, /metrics is open."""
    with client_from(thr.url, fresh_source()) as http:
        for headers in ({}, bearer("wrong-token"), {"x-api-key": METRICS_TOKEN}, bearer(METRICS_TOKEN + "x")):
            resp = http.get("/metrics", headers=headers)
            assert resp.status_code == 401, (headers, resp.text[:300])
            assert openai_error(resp)["type"] == "invalid_request_error"
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert METRICS_TOKEN not in resp.text
        resp = http.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    values = {
        line.split()[0]: float(line.split()[1])
        for line in resp.text.splitlines()
        if line.startswith("claudestore_auth_")
    }
    assert values["claudestore_auth_failures_total"] >= 2, values  # the two wrong tokens at least
    assert {"claudestore_auth_throttled_total", "claudestore_auth_throttle_clients"} <= set(values)
    with sec.client() as http:
        assert http.get("/metrics").status_code == 200
    from claudestore.server import app as app_module

    assert _compares_with_eq(app_module._check_metrics_token, {"token", "presented"}) == []
    assert "hmac.compare_digest" in inspect.getsource(app_module._check_metrics_token)


# -- the throttle itself (admission/auth_throttle.py) ------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scope(host: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"type": "http", "client": (host, 50000), "headers": headers}


def test_auth_throttle_window() -> None:
    clock = _Clock()
    throttle = AuthThrottle(3, 10.0, clock=clock)
    client = throttle.client_of(_scope("192.0.2.1"))
    for _ in range(2):
        throttle.failed(client)
    assert throttle.retry_after(client) is None
    throttle.check(client)
    throttle.failed(client)
    clock.now += 4.2
    assert throttle.retry_after(client) == pytest.approx(5.8)
    assert throttle.retry_after("192.0.2.2") is None
    with pytest.raises(RateLimited) as info:
        throttle.check(client)
    assert info.value.status == 429 and info.value.retry_after == 6
    assert "retry after 6 s" in info.value.message
    clock.now += 5.8  # the window, counted from the first failure, is over
    assert throttle.retry_after(client) is None
    throttle.failed(client)  # a new window with one failure
    assert throttle.retry_after(client) is None
    assert (throttle.failures, throttle.refused) == (4, 1)


class _FakeKeys:
    """A KeyAuthenticator stand-in: ``good`` is valid and cached, ``fresh`` valid but not cached."""

    def __init__(self) -> None:
        self.lookups: list[str | None] = []

    async def authenticate(self, raw: str | None) -> str:
        self.lookups.append(raw)
        if raw is None:
            raise AuthenticationFailed("missing", code="missing_api_key")
        if raw in ("good", "fresh"):
            return raw
        raise AuthenticationFailed("wrong", code="invalid_api_key")

    def knows(self, raw: str | None) -> bool:
        return raw == "good"


async def test_auth_throttle_guard_rules() -> None:
    throttle = AuthThrottle(3, 60.0, clock=_Clock())
    keys = _FakeKeys()
    scope = _scope("192.0.2.7")
    for _ in range(10):  # a missing key guesses nothing: not counted
        with pytest.raises(AuthenticationFailed):
            await throttle.guard(keys, None, scope)  # type: ignore[arg-type]
    assert len(throttle) == 0
    for raw in ("bad1", "good", "bad2", "good", "bad3"):  # successes neither count nor reset
        if raw == "good":
            assert await throttle.guard(keys, raw, scope) == "good"  # type: ignore[arg-type]
        else:
            with pytest.raises(AuthenticationFailed):
                await throttle.guard(keys, raw, scope)  # type: ignore[arg-type]
    keys.lookups.clear()
    for raw in ("bad4", "fresh", None):  # throttled: refused without a lookup
        with pytest.raises(RateLimited):
            await throttle.guard(keys, raw, scope)  # type: ignore[arg-type]
    assert keys.lookups == []
    assert await throttle.guard(keys, "good", scope) == "good"  # type: ignore[arg-type]
    assert keys.lookups == ["good"]
    with pytest.raises(RateLimited):
        await throttle.guard(keys, "bad5", scope)  # type: ignore[arg-type]
    assert await throttle.guard(keys, "fresh", _scope("192.0.2.8")) == "fresh"  # type: ignore[arg-type]
    assert (throttle.failures, throttle.refused) == (3, 4)


def test_auth_throttle_client_address() -> None:
    throttle = AuthThrottle(trusted_proxies=["10.0.0.0/8", "::1"])
    assert throttle.client_of({"type": "http", "headers": []}) is None
    assert throttle.client_of(_scope("192.0.2.1", "203.0.113.9")) == "192.0.2.1"  # untrusted peer
    assert throttle.client_of(_scope("10.1.2.3")) == "10.1.2.3"  # a proxy's own request
    assert throttle.client_of(_scope("10.1.2.3", "1.1.1.1, 203.0.113.9, 10.0.0.5")) == "203.0.113.9"
    assert throttle.client_of(_scope("10.1.2.3", "10.0.0.9, 10.0.0.5")) == "10.0.0.9"
    assert throttle.client_of(_scope("::1", "[2001:db8::1]:443")) == "2001:db8::/64"
    assert throttle.client_of(_scope("::ffff:10.0.0.1", "203.0.113.9:5555")) == "203.0.113.9"
    scope = _scope("10.0.0.1")
    scope["headers"] = [(b"x-forwarded-for", b"203.0.113.1"), (b"x-forwarded-for", b"203.0.113.2")]
    assert throttle.client_of(scope) == "203.0.113.2"  # every header line, in order
    # IPv6 clients are counted per /64: rotating addresses inside one does not escape.
    hosts = {throttle.client_of(_scope(f"2001:db8:0:7::{i:x}")) for i in range(1000)}
    assert hosts == {"2001:db8:0:7::/64"}


def test_auth_throttle_memory_is_bounded() -> None:
    """100,000 distinct addresses (a spoofed flood) through a throttle that tracks 10,000: it
    keeps the 10,000 most recent and stays within a few MB."""
    throttle = AuthThrottle(2, 60.0, max_clients=10_000)
    addresses = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(100_000)]
    tracemalloc.start()
    try:
        for address in addresses:
            throttle.failed(address)
            throttle.failed(address)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(throttle) == 10_000
    assert peak < 6 * 1024 * 1024, f"{peak / 1e6:.1f} MB for 10,000 tracked addresses"
    assert throttle.retry_after(addresses[-1]) is not None  # the newest are kept
    assert throttle.retry_after(addresses[0]) is None  # the oldest forgotten


# -- 7. upstream keys are never echoed -------------------------------------------------------------


def _assert_no_upstream_secrets(resp: httpx.Response, *extra: str) -> None:
    everything = resp.text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    for value in (UPSTREAM_KEY, WRONG_UPSTREAM_KEY, *extra):
        assert value not in everything, f"{value!r} in {resp.status_code} {everything[:400]}"


def test_gateway_keys_never_forwarded_upstream(sec: Sec, fake_upstream: FakeUpstream) -> None:
    """The upstream sees the gateway's own upstream key, never the customer's gateway key."""
    marker = f"forwarding-{secrets.token_hex(4)}"
    with sec.client() as http:
        customer = make_customer(http, "forwarding")
        both = {**anthropic_auth(customer.key), **bearer(customer.key)}
        for model in ("claude-test", "gpt-test"):
            for path in ("/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens"):
                assert http.post(path, json=message(model, marker), headers=both).status_code == 200
    seen = [r for r in fake_upstream.requests(50) if marker in json.dumps(r["body"])]
    assert len(seen) == 6, len(seen)
    for request in seen:
        headers = json.dumps(request["headers"])
        assert customer.key not in headers and customer.key[:14] not in headers, request["headers"]
        assert UPSTREAM_KEY in headers


def test_upstream_keys_never_echoed(sec: Sec) -> None:
    with sec.client() as http:
        for model in ("claude-test", "gpt-test", "claude-via-openai"):
            for stream in (False, True):
                for path, headers in (
                    ("/v1/messages", anthropic_auth(sec.key)),
                    ("/v1/chat/completions", bearer(sec.key)),
                ):
                    resp = http.post(
                        path,
                        json=message(model, "hi [[fake tool=get_weather]]", stream=stream),
                        headers=headers,
                    )
                    assert resp.status_code == 200
                    _assert_no_upstream_secrets(resp)
            _assert_no_upstream_secrets(
                http.post(
                    "/v1/messages/count_tokens", json=message(model, "hi"), headers=anthropic_auth(sec.key)
                )
            )
        for path in ("/v1/models", "/v1/models/claude-test"):
            _assert_no_upstream_secrets(http.get(path, headers=bearer(sec.key)))
            _assert_no_upstream_secrets(http.get(path, headers=anthropic_auth(sec.key)))
        # The upstream refuses the gateway's (wrong) key: the client learns nothing of either key.
        for model in ("claude-wrongkey", "gpt-wrongkey"):
            for path, headers, shape in (
                ("/v1/messages", anthropic_auth(sec.key), "anthropic"),
                ("/v1/chat/completions", bearer(sec.key), "openai"),
                ("/v1/messages/count_tokens", anthropic_auth(sec.key), "anthropic"),
            ):
                resp = http.post(path, json=message(model, "hi"), headers=headers)
                assert resp.status_code >= 400
                error_of(resp, shape)
                _assert_no_upstream_secrets(resp)


def test_upstream_key_quoted_by_the_upstream_is_not_relayed(sec: Sec) -> None:
    with sec.client() as http:
        for model in ("claude-quoting", "gpt-quoting"):
            for path, headers in (
                ("/v1/messages", anthropic_auth(sec.key)),
                ("/v1/chat/completions", bearer(sec.key)),
            ):
                resp = http.post(path, json=message(model, "hi"), headers=headers)
                assert resp.status_code >= 400
                _assert_no_upstream_secrets(resp)


def test_unreachable_upstream_address_is_not_revealed(sec: Sec) -> None:
    with sec.client() as http:
        resp = http.post("/v1/messages", json=message("claude-closed", "hi"), headers=anthropic_auth(sec.key))
    assert resp.status_code >= 500
    assert f":{sec.closed_port}" not in resp.text and "127.0.0.1" not in resp.text, resp.text


# -- 8. CORS closed by default, 9. security headers on web pages ----------------------------------


def test_cors_closed_by_default(sec: Sec) -> None:
    origin = "https://evil.example"
    with sec.client() as http:
        for path in (
            "/v1/messages",
            "/v1/chat/completions",
            "/v1/messages/count_tokens",
            "/v1/models",
            "/admin/accounts",
            "/v1/account",
            "/healthz",
            "/metrics",
        ):
            preflight = http.options(
                path,
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "x-api-key, authorization, content-type",
                },
            )
            assert preflight.status_code < 500
            simple = http.get(path, headers={"origin": origin, **bearer(sec.key)})
            for resp in (preflight, simple):
                cors = {k for k in resp.headers if k.lower().startswith("access-control-")}
                assert not cors, (path, resp.status_code, dict(resp.headers))


def test_security_headers_on_web_pages(sec: Sec) -> None:
    """Every web store page (public, log-in, errors, static) carries a strict CSP and the
    anti-framing / no-sniff headers; pages are not cached. The logged-in pages are covered in
    tests/test_web_auth.py::test_security_headers_on_every_page."""
    with sec.client() as http:
        for path in ("/", "/plans", "/docs", "/docs/quickstart", "/signup", "/login", "/console/login",
                     "/dashboard/nope", "/static/app.css"):
            resp = http.get(path)
            assert resp.status_code in (200, 303, 404), (path, resp.status_code)
            csp = resp.headers.get("content-security-policy", "")
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
            assert resp.headers.get("x-frame-options") == "DENY", path
            assert resp.headers.get("x-content-type-options") == "nosniff", path
            assert resp.headers.get("referrer-policy") == "same-origin", path
            if not path.startswith("/static/"):
                assert resp.headers.get("cache-control") == "no-store", path


def test_gateway_survived(sec: Sec) -> None:
    """Last: after every test above, the gateway still serves a request."""
    with sec.client() as http:
        assert (
            http.post(
                "/v1/messages", json=message("claude-test", "hi"), headers=anthropic_auth(sec.key)
            ).status_code
            == 200
        )
    assert sec.proc.poll() is None
