"""What is measured: the gateway's configuration, the scenarios and their HTTP requests.

A scenario is (client endpoint, public model, stream or not). Its **baseline** is the
request the gateway itself sends upstream for it, made directly to the fake upstream:
the same upstream work without the gateway in between. For a pass-through scenario that
is the client's own request in the same format; for a translated one it is the request in
the upstream's format (``/v1/messages`` -> ``gpt-test`` is baselined against a direct
``/v1/chat/completions`` call). "Added latency" is gateway minus that baseline.

Output length and stream pacing are set with the fake upstream's ``x-fake`` header. The
gateway does not forward client headers it does not know, so the models that need a knob
(``*-long``, ``*-slow``) sit on upstreams that add the header themselves
(``upstreams[].headers``); the direct baseline sends the same header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from procs import LITELLM_KEY, UPSTREAM_KEY

LONG_TOKENS = 2000  # text tokens of a "long" stream: about as many SSE events
SLOW_STREAM = "tokens=600; delay_ms=200"  # a stream that stays open for about two minutes

# A prompt of about 1.2 KB, the size of a small real request; the fake's output does not depend on it.
SYSTEM = (
    "You are a concise assistant embedded in a customer-support tool. Answer in plain prose, "
    "cite the relevant policy section when one applies, never invent order numbers, and ask one "
    "clarifying question when the request is ambiguous. Keep answers under 120 words unless the "
    "user asks for detail. The current policies cover refunds (section 4), shipping delays "
    "(section 7), warranty claims (section 9) and account security (section 12)."
)
USER = (
    "Hi, I ordered a pair of hiking boots three weeks ago and the tracking page has said "
    "'label created' ever since. The seller says it shipped. I need them for a trip in ten days. "
    "Can I get a refund or a replacement sent by express, and what do I need to send you? "
    "My order was placed with the same e-mail address as this account."
)

# upstream name -> x-fake header it adds (None: no header)
UPSTREAM_VARIANTS: dict[str, str | None] = {
    "": None,
    "-long": f"tokens={LONG_TOKENS}",
    "-slow": SLOW_STREAM,
}


def gateway_config(upstream_url: str, database_url: str) -> dict[str, Any]:
    """Like tests/support/servers.py: ``claude-test`` on an Anthropic-format upstream and
    ``gpt-test`` on an OpenAI-format one, both the fake; plus the ``-long``/``-slow`` variants."""
    upstreams: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    for suffix, knob in UPSTREAM_VARIANTS.items():
        headers = {"x-fake": knob} if knob else {}
        upstreams += [
            {
                "name": f"fake-anthropic{suffix}",
                "type": "anthropic",
                "base_url": upstream_url,
                "api_key": UPSTREAM_KEY,
                "headers": headers,
            },
            {
                "name": f"fake-openai{suffix}",
                "type": "openai",
                "base_url": upstream_url + "/v1",
                "api_key": UPSTREAM_KEY,
                "headers": headers,
            },
        ]
        models += [
            {
                "id": f"claude-test{suffix}",
                "upstream": f"fake-anthropic{suffix}",
                "upstream_model": "fake-claude",
            },
            {"id": f"gpt-test{suffix}", "upstream": f"fake-openai{suffix}", "upstream_model": "fake-gpt"},
        ]
    return {"database": {"url": database_url}, "upstreams": upstreams, "models": models}


# -- accounting (keys + limits + metering) ---------------------------------------------------

ACCOUNTING_MODES = ("off", "sqlite", "postgres-redis")
# postgres-redis: a fresh database is created on this server for each run and dropped after it;
# the limiter uses this Redis database, which is FLUSHED at the start of the run.
BENCH_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/13"

# The customer key's plan: every limit set (so every counter is checked and charged) but far
# above what a benchmark sends, so the figure is the cost of checking, never of refusing.
BENCH_PLAN = (
    "--rpm", "2000000000", "--tpm", "2000000000", "--concurrency", "1000000",
    "--quota-tokens", "1000000000000",
)  # fmt: skip
BENCH_CREDIT_USD = "1000000"
BENCH_PRICES = {"claude-*": ("3", "15"), "gpt-*": ("2.5", "10")}  # USD per Mtok in, out


def accounting_overrides(
    mode: str, *, database_url: str | None = None, redis_url: str | None = None
) -> dict[str, Any]:
    """Configuration merged into ``gateway_config`` for each ``--accounting`` mode.

    ``off`` and ``sqlite`` run the embedded default (SQLite, limits kept in process);
    ``postgres-redis`` puts the database on PostgreSQL and the limiter on Redis, as a
    multi-process deployment does.
    """
    if mode in ("off", "sqlite"):
        return {}
    if mode == "postgres-redis":
        return {"database": {"url": database_url}, "limits": {"redis_url": redis_url}}
    raise ValueError(f"unknown accounting mode {mode!r}; known: {', '.join(ACCOUNTING_MODES)}")


def setup_accounting(cli: Any) -> str:
    """Make a customer key: an account on a plan with every limit set (generously), credit so
    that its balance is enforced, prices for both test models. Returns the raw key.

    ``cli(*args)`` runs ``claudestore ARGS --config <the bench config>`` and returns stdout.
    Run it before the gateway starts: a running gateway seeds its live balance once.
    """
    import json

    cli("migrate")
    for pattern, (inp, out) in BENCH_PRICES.items():
        cli("prices", "set", pattern, "--input", inp, "--output", out)
    cli("plans", "create", "bench-all-limits", *BENCH_PLAN)
    account = json.loads(cli("accounts", "create", "bench-customer", "--json"))["id"]
    cli("accounts", "subscribe", str(account), "bench-all-limits")
    cli("credit", "add", str(account), BENCH_CREDIT_USD)
    out = cli("keys", "create", "bench-customer-key", "--account", str(account))
    from procs import KEY_PATTERN

    match = KEY_PATTERN.search(out)
    if not match:
        raise RuntimeError(f"no key in `claudestore keys create` output: {out!r}")
    return match.group(0)


def check_accounting(config: dict[str, Any], mode: str) -> str | None:
    """None when ``--accounting MODE`` can run with this gateway build; else why not."""
    if mode == "off":
        return None
    import msgspec

    from claudestore.config import Config, ConfigError, parse_config

    sections = {f.name for f in msgspec.structs.fields(Config)}
    if not {"limits", "accounting"} <= sections:
        return (
            f"--accounting {mode}: this gateway build has no limits/accounting configuration "
            f"(its sections: {', '.join(sorted(sections))})."
        )
    try:
        parse_config(config)
    except ConfigError as exc:
        return (
            f"--accounting {mode}: the gateway does not accept the configuration "
            f"(its config parser says: {exc}). Update bench/scenarios.py:accounting_overrides."
        )
    return None


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# -- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One POST, as every load generator sends it."""

    path: str
    headers: dict[str, str]
    body: bytes
    stream: bool

    def spec(self, base_url: str) -> dict[str, Any]:
        return {
            "url": base_url + self.path,
            "headers": self.headers,
            "body": self.body.decode(),
            "stream": self.stream,
        }


def anthropic_request(model: str, key: str, stream: bool, *, bearer: bool = False, knob: str | None = None):  # type: ignore[no-untyped-def]
    body = {
        "model": model,
        "max_tokens": 4096,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": USER}],
    }
    if stream:
        body["stream"] = True
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if bearer:
        headers["authorization"] = f"Bearer {key}"
    else:
        headers["x-api-key"] = key
    if knob:
        headers["x-fake"] = knob
    return HttpRequest("/v1/messages", headers, orjson.dumps(body), stream)


def openai_request(model: str, key: str, stream: bool, *, usage: bool = False, knob: str | None = None):  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 4096,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
    }
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    if knob:
        headers["x-fake"] = knob
    return HttpRequest("/v1/chat/completions", headers, orjson.dumps(body), stream)


@dataclass(frozen=True)
class Scenario:
    endpoint: str  # "messages" | "chat"
    model: str  # public model: claude-test | gpt-test (+ variant suffix)
    stream: bool
    variant: str = ""  # "" | "-long" | "-slow"
    tags: tuple[str, ...] = field(default=())

    @property
    def client_format(self) -> str:
        return "anthropic" if self.endpoint == "messages" else "openai"

    @property
    def upstream_format(self) -> str:
        return "anthropic" if self.model.startswith("claude") else "openai"

    @property
    def translated(self) -> bool:
        return self.client_format != self.upstream_format

    @property
    def name(self) -> str:
        path = "/v1/messages" if self.endpoint == "messages" else "/v1/chat/completions"
        kind = "translated" if self.translated else "pass-through"
        return f"{path} → {self.model}{self.variant} ({kind})"

    @property
    def key(self) -> str:
        return f"{self.endpoint}:{self.model}{self.variant}:{'stream' if self.stream else 'json'}"

    @property
    def baseline_key(self) -> str:
        return f"direct:{self.upstream_format}{self.variant}:{'stream' if self.stream else 'json'}"

    @property
    def baseline_name(self) -> str:
        path = "/v1/messages" if self.upstream_format == "anthropic" else "/v1/chat/completions"
        return f"direct {path}"

    def gateway_request(self, key: str) -> HttpRequest:
        model = self.model + self.variant
        if self.endpoint == "messages":
            return anthropic_request(model, key, self.stream)
        return openai_request(model, key, self.stream)

    def direct_request(self) -> HttpRequest:
        """What the gateway sends upstream for this scenario, sent straight to the fake."""
        knob = UPSTREAM_VARIANTS[self.variant]
        if self.upstream_format == "anthropic":
            return anthropic_request("fake-claude", UPSTREAM_KEY, self.stream, knob=knob)
        return openai_request("fake-gpt", UPSTREAM_KEY, self.stream, usage=True, knob=knob)

    def litellm_request(self) -> HttpRequest:
        """The same client request to LiteLLM's proxy (its master key, as a Bearer token)."""
        model = self.model + self.variant
        if self.endpoint == "messages":
            return anthropic_request(model, LITELLM_KEY, self.stream, bearer=True)
        return openai_request(model, LITELLM_KEY, self.stream)


def main_scenarios() -> list[Scenario]:
    """Both endpoints x both upstream formats x stream or not: 8 scenarios."""
    return [
        Scenario(endpoint, model, stream)
        for stream in (False, True)
        for endpoint, model in (
            ("messages", "claude-test"),
            ("messages", "gpt-test"),
            ("chat", "gpt-test"),
            ("chat", "claude-test"),
        )
    ]


def long_stream_scenarios() -> list[Scenario]:
    return [
        Scenario(endpoint, model, True, "-long")
        for endpoint, model in (
            ("messages", "claude-test"),
            ("chat", "gpt-test"),
            ("messages", "gpt-test"),
            ("chat", "claude-test"),
        )
    ]


def litellm_scenarios() -> list[Scenario]:
    """LiteLLM serves ``claude-test`` (``anthropic/fake-claude``) on both endpoints."""
    return [
        Scenario(endpoint, "claude-test", stream)
        for stream in (False, True)
        for endpoint in ("messages", "chat")
    ]


def litellm_config(upstream_url: str) -> dict[str, Any]:
    """A minimal LiteLLM proxy config: the model list and a master key, defaults otherwise."""
    return {
        "model_list": [
            {
                "model_name": "claude-test",
                "litellm_params": {
                    "model": "anthropic/fake-claude",
                    "api_base": upstream_url,
                    "api_key": UPSTREAM_KEY,
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_KEY},
    }
