"""The fuzzers' gateway (``world``), their example budget and the strategies they share.

The fuzz tests (tests/test_fuzz_generation.py, tests/test_fuzz_management_apis.py,
tests/test_fuzz_transport.py) send generated requests to the real gateway over HTTP and check,
for every one of them (``World.send``):

- no 5xx caused by the input (a 5xx is tolerated only when the error says the *upstream*
  failed, ``Upstream '…' error``; the fake upstream is deterministic, so valid bodies get
  200 and such errors are counted and reported, never expected);
- every error is in the caller's shape (Anthropic for ``/v1/messages``, ``count_tokens``,
  ``/v1/models`` with ``anthropic-version``, ``/admin`` and ``/v1/account``; OpenAI for
  ``/v1/chat/completions`` and ``/v1/models`` without it);
- the gateway process is still alive, and at the end its RSS has stayed flat
  (``test_gateway_alive_and_memory_flat``, run last).

They share one gateway of their own on SQLite, ``world`` (session-scoped, so one process and
one set of statistics for the whole fuzz run, as ``scripts/fuzz_long.py`` reports them; not the
shared, two-backend ``gateway`` fixture): the admin fuzzing revokes keys and deletes accounts,
which must not disturb other modules, and one backend keeps the CI budget. Load it with::

    pytest_plugins = ["tests.support.fuzz"]

in the test module. The number of examples comes from a hypothesis profile: ``claudestore-ci``
(the default: a few hundred examples in all, derandomized so CI is reproducible) or
``claudestore-long`` (random, scaled to ``CLAUDESTORE_FUZZ_EXAMPLES`` examples in all) — see
``scripts/fuzz_long.py``; each test takes its ``WEIGHTS`` share of them (``budget``).

PYTEST_DONT_REWRITE: the test modules import this module before pytest loads it as their plugin,
too late for assertion rewriting (pytest would warn); its asserts carry their own messages.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from tests.support.envelopes import error_of, rss_kib
from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

# -- profiles ------------------------------------------------------------------------------

#: Relative weight of each fuzz test: its share of the examples.
WEIGHTS = {
    "generation_bodies": 8,
    "malformed_bytes": 3,
    "deep_and_huge": 1,
    "headers": 3,
    "models": 2,
    "admin": 5,
    "customer": 3,
    "truncated": 1,
}
CI_EXAMPLES = int(os.environ.get("CLAUDESTORE_FUZZ_CI_EXAMPLES", "260"))
_COMMON = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
settings.register_profile("claudestore-ci", max_examples=CI_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile(
    "claudestore-long",
    max_examples=int(os.environ.get("CLAUDESTORE_FUZZ_EXAMPLES", "10000")),
    derandomize=False,
    **_COMMON,
)
PROFILE = settings.get_profile(os.environ.get("CLAUDESTORE_FUZZ_PROFILE", "claudestore-ci"))


def budget(name: str) -> settings:
    """The profile, with this test's share of the profile's ``max_examples``."""
    share = PROFILE.max_examples * WEIGHTS[name] // sum(WEIGHTS.values())
    return settings(PROFILE, max_examples=max(share, 5))


# -- the gateway under test ------------------------------------------------------------------

RSS_EVERY = 250  # requests between two RSS samples (reported by scripts/fuzz_long.py)
MODELS = ("claude-test", "gpt-test", "claude-via-openai", "no-such-model")
PRICE = {"input": "3", "output": "15"}


@dataclass
class Stats:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    upstream_5xx: list[str] = field(default_factory=list)
    rss_samples: list[tuple[int, int]] = field(default_factory=list)  # (requests so far, KiB)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(sorted(self.by_status.items())),
            "upstream_5xx": self.upstream_5xx[:50],
            "rss_kib": self.rss_samples,
        }


@dataclass
class World:
    gw: Gateway
    http: httpx.Client
    customer_key: str
    customer_key_id: int
    customer_account: int
    plan_id: int
    operator_key_id: int
    stats: Stats
    rss_baseline_kib: int = 0

    def __repr__(self) -> str:
        return f"World({self.gw.url})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # keeps hypothesis' reports short
        printer.text(repr(self))

    @property
    def protected_keys(self) -> set[int]:
        return {self.operator_key_id, self.customer_key_id}

    def send(
        self,
        method: str,
        path: str,
        shape: str,
        *,
        content: bytes | None = None,
        headers: dict[str, Any] | list[tuple[Any, Any]] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, then the properties every response must have."""
        try:
            resp = self.http.request(method, path, content=content, headers=headers, params=params)
        except httpx.LocalProtocolError:
            assume(False)  # a header value httpx itself refuses to send
            raise
        self.stats.requests += 1
        self.stats.by_status[resp.status_code] += 1
        assert self.gw.proc.poll() is None, f"gateway exited with {self.gw.proc.returncode}"
        if self.stats.requests % RSS_EVERY == 0:
            self.stats.rss_samples.append((self.stats.requests, rss_kib(self.gw.proc.pid)))
        if method == "HEAD":
            assert resp.status_code < 500, resp.status_code
        elif resp.status_code >= 400:
            error = error_of(resp, shape)
            if resp.status_code >= 500:
                message = error["message"]
                # Only an upstream's own failure may surface as a 5xx; never the gateway's.
                assert message.startswith("Upstream '"), (method, path, resp.status_code, error)
                self.stats.upstream_5xx.append(f"{resp.status_code} {method} {path}: {message[:200]}")
        elif resp.status_code == 307:
            # Starlette's slash redirect on the account API (``/v1/account/`` → ``/v1/account``).
            location = urlsplit(resp.headers["location"]).path
            assert path.endswith("/") and location == path.rstrip("/"), resp.headers
        else:
            assert resp.status_code in (200, 201), (resp.status_code, resp.text[:300])
            ctype = resp.headers.get("content-type", "")
            assert ctype.startswith(("application/json", "text/event-stream")), ctype
        return resp


def ok_json(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    return resp.json()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("fuzz-gateway")
    gw = start_gateway(tmp, fake_upstream, f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}", name="fuzz")
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=gw.url, timeout=60) as http:
        for model in ("claude-test", "gpt-test"):
            ok_json(http.put(f"/admin/prices/{model}", json=PRICE, headers=admin), 201)
        plan = ok_json(http.post("/admin/plans", json={"name": "fuzz-plan"}, headers=admin), 201)
        account = ok_json(http.post("/admin/accounts", json={"name": "fuzz-customer"}, headers=admin), 201)
        ok_json(
            http.post(
                f"/admin/accounts/{account['id']}/subscription", json={"plan": "fuzz-plan"}, headers=admin
            ),
            201,
        )
        ok_json(
            http.post(f"/admin/accounts/{account['id']}/credit", json={"usd": "1000"}, headers=admin), 201
        )
        key = ok_json(
            http.post(f"/admin/accounts/{account['id']}/keys", json={"name": "fuzz"}, headers=admin), 201
        )
        operator = [
            k for k in ok_json(http.get("/admin/keys", headers=admin))["data"] if k["account_id"] is None
        ]
        world = World(gw, http, key["key"], key["id"], account["id"], plan["id"], operator[0]["id"], Stats())
        warm_up(world)
        world.rss_baseline_kib = rss_kib(gw.proc.pid)
        yield world
    report = os.environ.get("CLAUDESTORE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(world.stats.as_dict(), indent=2))
    stop(gw.proc)


def warm_up(world: World) -> None:
    """Reach steady state before the RSS baseline: every endpoint once, the biggest bodies
    the fuzz tests send, a few streams."""
    for model in ("claude-test", "gpt-test"):
        for stream in (False, True):
            for shape, path in (("anthropic", "/v1/messages"), ("openai", "/v1/chat/completions")):
                body = template(shape, model)
                body["stream"] = stream
                world.send("POST", path, shape, content=dumps(body), headers=gen_headers(world.gw.key))
    for char in ("a", "\U0001f980"):  # the biggest bodies of test_deep_and_huge, through both paths
        for model in ("claude-test", "gpt-test"):
            big = template("anthropic", model)
            big["messages"][-1]["content"] = char * (HUGE_TEXT // len(json.dumps(char)))
            world.send(
                "POST", "/v1/messages", "anthropic", content=dumps(big), headers=gen_headers(world.gw.key)
            )
    for _ in range(3):
        world.send("GET", "/v1/models", "openai", headers=gen_headers(world.gw.key))
        world.send("GET", "/v1/account/usage", "anthropic", headers=gen_headers(world.customer_key))
        world.send("GET", "/admin/accounts", "anthropic", headers={"authorization": f"Bearer {ADMIN_KEY}"})


# -- generators ------------------------------------------------------------------------------

WEIRD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",  # RTL override
    "\u200f\u200e\u061c",  # RTL / LTR / Arabic marks
    "\ufeffBOM",
    "e\u0301\u0301\u0301",  # stacked combining marks
    "\U0001f980\U0001f3f3\ufe0f\u200d\U0001f308\U0001f469\U0001f3fd\u200d\U0001f4bb",  # ZWJ sequences
    "\U0010ffff\uffff\ufffe",
    "\U0001d54f" * 50,
    "\r\n\r\n",
    "\t\v\f",
    '\\"',
    "{{template}}",
    "%s%n%x",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../etc/passwd",
    "\uff21\uff22\uff23",
    "\u0085\u2028\u2029",
]
#: Lone surrogates (category Cs): ``json.dumps`` writes them as ``"\\ud800"`` escapes.
SURROGATE_TEXT = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)
TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(WEIRD_STRINGS),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
)
TEXT_OR_SURROGATE = st.one_of(TEXT, TEXT, TEXT, SURROGATE_TEXT)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**64 - 1, 2**64, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT_OR_SURROGATE)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=10,
)
MAX_ID = 2**63 - 1
HUGE_TEXT = 4 * 1024 * 1024  # bytes of JSON string, the largest body the fuzz tests send


def segment(text: str) -> str:
    """``text`` as one URL path segment; dots escaped too, so that no client folds ``..`` away."""
    return quote(text, safe="").replace(".", "%2E")


def dumps(value: Any) -> bytes:
    """Python's JSON (lone surrogates become ``\\udXXX`` escapes; big ints stay exact)."""
    return json.dumps(value).encode()


def template(shape: str, model: str) -> dict[str, Any]:
    """A rich, valid request body of each format (tools, tool results, images, options)."""
    if shape == "anthropic":
        return {
            "model": model,
            "max_tokens": 16,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "What is the weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Let me check."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "sun"}],
                        },
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                        },
                        {"type": "text", "text": "Thanks [[fake tokens=3]]"},
                    ],
                },
            ],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
            "tool_choice": {"type": "auto"},
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 5,
            "stop_sequences": ["zzz"],
            "metadata": {"user_id": "user-1"},
            "stream": False,
        }
    return {
        "model": model,
        "max_tokens": 16,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sun"},
            {"role": "user", "content": "Thanks [[fake tokens=3]]"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "auto",
        "temperature": 0.5,
        "top_p": 1,
        "stop": ["zzz"],
        "stream": False,
        "stream_options": {"include_usage": True},
        "user": "user-1",
        "seed": 1,
    }


ENDPOINTS = [
    ("/v1/messages", "anthropic", "anthropic"),
    ("/v1/chat/completions", "openai", "openai"),
    ("/v1/messages/count_tokens", "anthropic", "anthropic"),
    # The other format's body on each endpoint: a realistic client mistake.
    ("/v1/messages", "openai", "anthropic"),
    ("/v1/chat/completions", "anthropic", "openai"),
]


def gen_headers(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "x-api-key": key,
        "authorization": f"Bearer {key}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **extra,
    }


def _truncations(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, len(valid) - 1).map(lambda n: valid[:n])


MALFORMED = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),
    _truncations(dumps(template("anthropic", "claude-test"))),
    _truncations(dumps(template("openai", "gpt-test"))),
    st.sampled_from(
        [
            b"",
            b" ",
            b"null",
            b"[]",
            b"1",
            b'"text"',
            b"true",
            b"{",
            b"}",
            b'{"model":}',
            b'{"model": "claude-test", "max_tokens": NaN, "messages": []}',
            b'{"model": "claude-test", "max_tokens": Infinity, "messages": []}',
            b'{"model": "claude-test", "max_tokens": 1e999, "messages": []}',
            b'{"model": "claude-test", "max_tokens": 123456789012345678901234567890, "messages": []}',
            b'{"model": "claude-test", "model": 5, "max_tokens": 5, "messages": []}',
            b'{"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}',
            b'{"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "\\udfff\\ud800"}]}',
            b'{"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "\xff\xfe"}]}',
            b'{"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "\xc0\xaf"}]}',
            b'{"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
            b'\xef\xbb\xbf{"model": "claude-test", "max_tokens": 5, "messages": []}',
            b'{"model": "claude-test"}\x00',
            b'{"model": "claude-test"} {"model": "claude-test"}',
            b"{'model': 'claude-test'}",
            b'{"model": "claude-test", "max_tokens": 5, "messages": [],}',
            b"\x00" * 64,
            b'{"a":' * 2000,
        ]
    ),
)


QUERY_VALUE = st.one_of(
    TEXT,
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "0", "-1", "1000000", "1e3", "claude-test", "gpt-test", "%00", "null"]),
)
