"""Deployment choice, health (cooldown, half-open probe) and the attempt plan, on a fake clock;
the metrics exposition and the JSON log formatter; readiness and refusal while draining."""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from claudestore.config import ConfigError, DeploymentConfig, ModelConfig, RoutingConfig, parse_config
from claudestore.core.errors import (
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from claudestore.observability.logs import JSONFormatter, redact, request_id_var
from claudestore.observability.metrics import Metrics
from claudestore.routing.attempts import AttemptPlan, retryable
from claudestore.routing.deployments import Deployment, choose
from claudestore.routing.health import Health
from claudestore.routing.router import Route
from claudestore.server.outcome import Outcome

CFG = RoutingConfig(
    max_attempts=3,
    budget_seconds=10,
    backoff_base=0.1,
    backoff_max=1,
    max_retry_wait=2,
    cooldown_failures=2,
    cooldown_seconds=5,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(name: str, model: str = "m", fmt: str = "anthropic", **config: Any) -> Deployment:
    provider: Any = SimpleNamespace(name=name, format=fmt)
    return Deployment(model, DeploymentConfig(upstream=name, name=name, **config), provider)


def route(model: str, *deps: Deployment, fallbacks: tuple[str, ...] = ()) -> Route:
    mc = ModelConfig(id=model, upstream=deps[0].provider.name)
    return Route(model, mc, deps[0].provider, deps[0].upstream_model, deps, fallbacks)


def fail(d: Deployment, clock: Clock, status: int = 500, retry_after: float | None = None) -> bool:
    return d.health.failure(
        clock.now, status=status, retry_after=retry_after, message="x", threshold=2, cooldown=5
    )


# -- choice ------------------------------------------------------------------------------------


def test_choose_priority_then_least_loaded_then_weight() -> None:
    a, b, c = deployment("a", weight=3), deployment("b", weight=1), deployment("c", priority=1)
    rng = random.Random(7)
    picks = Counter(choose([a, b, c], rng).name for _ in range(4000))
    assert picks["c"] == 0  # a lower priority value always wins while it is selectable
    assert 0.7 < picks["a"] / 4000 < 0.8  # 3:1 by weight when nothing is in flight
    a.in_flight = 3  # 3/3 = 1 per weight unit vs b's 0: b is less loaded
    assert {choose([a, b], rng).name for _ in range(50)} == {"b"}
    b.in_flight = 1  # 1/1 == 3/3: back to weighted random among the tied
    assert {choose([a, b], rng).name for _ in range(200)} == {"a", "b"}
    assert choose([c], rng) is c


# -- health ------------------------------------------------------------------------------------


def test_cooldown_after_consecutive_failures_then_a_single_probe() -> None:
    clock, h = Clock(), Health()
    assert not h.failure(clock.now, status=500, retry_after=None, message="boom", threshold=2, cooldown=5)
    assert h.state(clock.now) == "healthy" and h.available(clock.now)
    assert h.failure(clock.now, status=502, retry_after=None, message="boom", threshold=2, cooldown=5)
    assert h.state(clock.now) == "cooldown" and not h.available(clock.now)
    clock.now += 5
    assert h.state(clock.now) == "half_open" and h.available(clock.now)
    h.begin(clock.now)  # the probe
    assert h.probing and not h.available(clock.now)  # one request only
    # The probe fails: a new cooldown at once (one failure is enough now).
    assert h.failure(clock.now, status=500, retry_after=None, message="again", threshold=2, cooldown=5)
    assert h.state(clock.now) == "cooldown" and h.cooldowns == 2
    clock.now += 5
    h.begin(clock.now)
    h.success(clock.now)
    assert h.state(clock.now) == "healthy" and h.failures == 0 and not h.probing


def test_retry_after_cools_down_at_once_and_old_successes_do_not_end_it() -> None:
    clock, h = Clock(), Health()
    began = clock.now
    clock.now += 1
    assert h.failure(clock.now, status=529, retry_after=30, message="overloaded", threshold=3, cooldown=5)
    assert h.cooldown_until == clock.now + 30
    h.success(began)  # a stream that began before the 529 finishing: the retry-after stands
    assert h.state(clock.now) == "cooldown"
    h.success(clock.now)  # a forced attempt that began during the cooldown and was accepted
    assert h.state(clock.now) == "healthy"
    # retry-after on a status that is no "not now" is only a failure like any other
    assert not h.failure(clock.now, status=500, retry_after=30, message="x", threshold=3, cooldown=5)


def test_deployment_rate_window() -> None:
    d = deployment("a", rpm=2, tpm=100)
    t = 5000.0
    assert d.has_capacity(t)
    d.started(t)
    d.started(t + 1)
    assert not d.has_capacity(t + 2)  # 2 requests in the last minute
    assert d.has_capacity(t + 61)
    d.finished(t + 61, tokens=150)
    assert not d.has_capacity(t + 62)  # tokens over tpm
    assert d.window is not None and 1 <= d.window.frees_in(t + 62) <= 60
    assert d.has_capacity(t + 125)


# -- the attempt plan ----------------------------------------------------------------------------


def test_plan_tries_other_deployments_first_then_retries_with_backoff() -> None:
    clock = Clock()
    a, b = deployment("a"), deployment("b", priority=1)
    plan = AttemptPlan([route("m", a, b)], CFG, clock=clock, rng=random.Random(1))
    first = plan.next()
    assert first is not None and (first.deployment, first.wait, first.kind) == (a, 0, "first")
    fail(a, clock)
    second = plan.next(a, UpstreamError(500, "x"))
    assert second is not None and (second.deployment, second.wait, second.kind) == (b, 0, "next_deployment")
    fail(b, clock)
    third = plan.next(b, UpstreamError(500, "x"))
    # Both failed once (not cooling yet): retry the preferred one after a jittered backoff.
    assert third is not None and third.deployment is a and third.kind == "next_deployment"
    assert 0.1 <= third.wait <= 0.2  # base 0.1 * 2**1, jitter 50-100 %
    assert plan.attempts == 3
    assert plan.next(a, UpstreamError(500, "x")) is None  # max_attempts for the level


def test_plan_moves_to_fallbacks_and_forces_the_last_level_when_all_cool() -> None:
    clock = Clock()
    a, fb = deployment("a"), deployment("fb", model="f")
    plan = AttemptPlan([route("m", a, fallbacks=("f",)), route("f", fb)], CFG, clock=clock)
    assert plan.next().deployment is a  # type: ignore[union-attr]
    fail(a, clock, 529, retry_after=60)  # cooling for a minute
    step = plan.next(a, UpstreamError(529, "x", retry_after=60))
    assert step is not None and (step.deployment, step.kind, step.wait) == (fb, "fallback", 0)
    assert plan.level_attempts == 1 and plan.attempts == 2
    # The fallback cools down too, with a short retry-after: the last level is forced after it.
    fail(fb, clock, 429, retry_after=1.5)
    step = plan.next(fb, UpstreamError(429, "x", retry_after=1.5))
    assert (
        step is not None
        and step.deployment is fb
        and step.kind == "retry"
        and step.wait == pytest.approx(1.5)
    )
    fail(fb, clock, 429, retry_after=30)
    assert plan.next(fb, UpstreamError(429, "x", retry_after=30)) is None  # too long to wait: give up


def test_plan_at_request_start_skips_cooling_deployments_or_uses_the_one_recovering_first() -> None:
    clock = Clock()
    a, b = deployment("a"), deployment("b")
    fail(a, clock, 529, retry_after=10)
    plan = AttemptPlan([route("m", a, b)], CFG, clock=clock)
    assert plan.next().deployment is b  # type: ignore[union-attr]
    fail(b, clock, 529, retry_after=5)
    plan = AttemptPlan([route("m", a, b)], CFG, clock=clock)
    step = plan.next()  # everything cools: a breaker steers, it does not refuse
    assert step is not None and step.deployment is b and step.wait == 0


def test_plan_budget_and_capacity() -> None:
    clock = Clock()
    a = deployment("a")
    plan = AttemptPlan([route("m", a)], CFG, clock=clock)
    plan.next()
    clock.now += 11  # past budget_seconds
    assert plan.next(a, UpstreamTimeout("slow")) is None

    full = deployment("full", rpm=1)
    full.started(clock.now)
    plan = AttemptPlan([route("m", full)], CFG, clock=clock)
    with pytest.raises(Overloaded) as info:
        plan.next()
    assert info.value.retry_after is not None and info.value.retry_after >= 1


def test_plan_skips_deployments_the_request_cannot_use() -> None:
    a, o = deployment("a"), deployment("o", fmt="openai")
    plan = AttemptPlan([route("m", o, a)], CFG, lambda d: d.format == "anthropic")
    assert plan.servable and plan.next().deployment is a  # type: ignore[union-attr]
    assert not AttemptPlan([route("m", o)], CFG, lambda d: d.format == "anthropic").servable


def test_only_failures_the_client_did_not_cause_are_retried() -> None:
    for err in (InvalidRequest("x"), PermissionDenied("x"), NotFound("x"), RequestTooLarge("x")):
        assert not retryable(err)
    for status in (400, 401, 403, 404, 413, 422):
        assert not retryable(UpstreamError(status, "x"))
    for status in (408, 409, 429, 500, 502, 503, 504, 529):
        assert retryable(UpstreamError(status, "x"))
    assert retryable(UpstreamTimeout("x"))


def test_config_deployments_and_fallbacks() -> None:
    base: dict[str, Any] = {
        "upstreams": [{"name": "a", "type": "anthropic"}, {"name": "b", "type": "anthropic"}]
    }
    cfg = parse_config(
        {
            **base,
            "models": [
                {
                    "id": "m",
                    "deployments": [{"upstream": "a"}, {"upstream": "b", "weight": 2}],
                    "fallbacks": ["n"],
                },
                {"id": "n", "upstream": "b"},
            ],
        }
    )
    assert [d.upstream for d in cfg.models[0].deployment_list()] == ["a", "b"]
    assert cfg.models[1].deployment_list()[0].upstream == "b"
    bad = [
        ({"id": "m", "deployments": [{"upstream": "a", "weight": 0}]}, "weight"),
        ({"id": "m", "upstream": "a", "deployments": [{"upstream": "a"}]}, "not both"),
        ({"id": "m", "deployments": [{"upstream": "a"}, {"upstream": "a"}]}, "distinct names"),
        ({"id": "m", "upstream": "a", "fallbacks": ["m"]}, "fallbacks[0]"),
    ]
    for model, message in bad:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            parse_config({**base, "models": [model]})


# -- metrics and logs ----------------------------------------------------------------------------


def test_metrics_exposition() -> None:
    m = Metrics()
    out = Outcome("req_1", "anthropic", model='we"ird', upstream="up", status=200)
    out.usage.input_tokens, out.usage.output_tokens, out.cost_nanos = 10, 5, 1_500_000_000
    out.finished_at, out.first_token_at = out.started + 0.3, out.started + 0.07
    m.observe(out)
    d = deployment("a")
    m.attempt(d, "529")
    m.cooldown(d)
    text = m.render([d]).decode()
    assert (
        'claudestore_requests_total{endpoint="anthropic",model="we\\"ird",upstream="up",status="200"} 1'
        in text
    )
    assert 'claudestore_tokens_total{model="we\\"ird",upstream="up",type="output"} 5' in text
    assert 'claudestore_cost_usd_total{model="we\\"ird",upstream="up"} 1.500000000' in text
    assert (
        'claudestore_request_duration_seconds_bucket{endpoint="anthropic",model="we\\"ird",upstream="up",le="0.25"} 0'
        in text
    )
    assert (
        'claudestore_request_duration_seconds_bucket{endpoint="anthropic",model="we\\"ird",upstream="up",le="0.5"} 1'
        in text
    )
    assert (
        'claudestore_time_to_first_token_seconds_count{endpoint="anthropic",model="we\\"ird",upstream="up"} 1'
        in text
    )
    assert 'claudestore_deployment_state{model="m",deployment="a",upstream="a",state="healthy"} 1' in text
    assert 'claudestore_cooldowns_total{model="m",deployment="a"} 1' in text
    assert "# TYPE claudestore_request_duration_seconds histogram" in text


def test_json_logs_carry_the_request_id_and_mask_keys() -> None:
    record = logging.LogRecord(
        "claudestore.x", logging.WARNING, __file__, 1, "bad key %s", ("sk-ant-api03-abcdefghijklmnop",), None
    )
    record.deployment = "primary"
    token = request_id_var.set("req_abc")
    try:
        line = json.loads(JSONFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "req_abc" and line["level"] == "warning" and line["deployment"] == "primary"
    assert "abcdefghijklmnop" not in line["message"] and line["message"].startswith("bad key sk-ant")
    assert redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz") == "Authorization: Bearer …"


# -- readiness and refusal while draining (in process) -------------------------------------------


async def test_readyz_and_refusal_while_draining(tmp_path: Path) -> None:
    from claudestore.server.app import create_app

    config = parse_config(
        {
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"},
            "upstreams": [{"name": "a", "type": "anthropic", "base_url": "http://127.0.0.1:9"}],
            "models": [{"id": "m", "upstream": "a"}],
        }
    )
    app = create_app(config)
    gw = await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            gw.begin_drain(60)
            draining = await client.get("/readyz")
            assert draining.status_code == 503 and draining.json()["status"] == "draining"
            refused = await client.post("/v1/messages", json={}, headers={"anthropic-version": "2023-06-01"})
            assert refused.status_code == 529 and refused.json()["error"]["type"] == "overloaded_error"
            assert refused.headers["retry-after"] == "1"
            oai = await client.post("/v1/chat/completions", json={})
            assert oai.status_code == 503 and oai.json()["error"]["type"] == "server_error"
            assert (await client.get("/healthz")).status_code == 200  # alive while draining
            metrics = await client.get("/metrics")
            assert "claudestore_draining 1" in metrics.text
    finally:
        await app.shutdown()


async def test_read_with_deadlines_on_a_response_made_by_chunks() -> None:
    """A provider whose response makes its body in ``chunks()`` (the local model) gets the same
    ``read(deadline)`` as a socket: a deadline does not lose or cancel the pending chunk."""
    import asyncio

    from claudestore.providers.base import UpstreamResponse

    closed: list[bool] = []

    class Made(UpstreamResponse):
        __slots__ = ()

        def __init__(self) -> None:
            pass

        async def chunks(self) -> Any:
            try:
                for piece in (b"a", b"b"):
                    await asyncio.sleep(0.05)
                    yield piece
            finally:
                closed.append(True)

    loop = asyncio.get_running_loop()
    resp = Made()
    with pytest.raises(TimeoutError):
        await resp.read(loop.time() + 0.01)
    assert await resp.read(loop.time() + 1) == b"a"
    assert await resp.read(loop.time() + 1) == b"b"
    assert await resp.read(loop.time() + 1) == b""
    assert closed == [True]

    resp = Made()
    with pytest.raises(TimeoutError):
        await resp.read(loop.time() + 0.01)
    resp.stop_reading()  # the stream is abandoned: the generator is closed, nothing left pending
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert closed == [True, True]
