"""Routing end to end: deployments, retries, fallbacks and cooldowns on a real gateway process
in front of the fake upstream (``rgw``, tests/support/routing.py), every upstream error status
before the first byte, deployment rpm limits and first-byte timeouts; and how they show on
``/admin/upstreams``, ``/metrics`` and ``/readyz``.

Checked: what each SDK sees, what the fake received (how many attempts, where: the ``x-dep``
header names the deployment), the ledger row (one per request, ``attempts``). ``test_metrics``
reads the counters the earlier tests of this module left on the gateway.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import pytest_asyncio
from sqlalchemy import select

from claudestore.storage.billing_models import UsageRecord
from claudestore.storage.db import Database
from tests.support.routing import (
    CREDENTIALS,
    NOT_RETRIED,
    RETRIED,
    claude,
    db,
    hello,
    http,
    ledger_row,
    oai,
    rgw,
    slow_upstream,
    text_of,
)
from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway

__all__ = ["claude", "db", "http", "oai", "rgw", "slow_upstream"]  # fixtures, imported explicitly


class FakeLog:
    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake

    async def clear(self) -> None:
        async with httpx.AsyncClient() as client:
            (await client.delete(f"{self.fake.url}/_fake/requests")).raise_for_status()

    async def entries(self) -> list[dict]:
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{self.fake.url}/_fake/requests", params={"limit": 200})
        return [r for r in resp.json() if r["path"].endswith(("/messages", "/completions"))]

    async def deployments(self) -> list[str]:
        return [r["headers"].get("x-dep", "?") for r in await self.entries()]


@pytest_asyncio.fixture(loop_scope="session")
async def fake_log(fake_upstream: FakeUpstream) -> FakeLog:
    log = FakeLog(fake_upstream)
    await log.clear()
    return log


async def upstreams(http: httpx.AsyncClient) -> dict[str, dict]:
    resp = await http.get("/admin/upstreams", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert resp.status_code == 200, resp.text
    return {f"{d['model']}:{d['name']}": d for d in resp.json()["data"]}


# -- deployments, retries, fallbacks ---------------------------------------------------------


async def test_overloaded_deployment_fails_over_then_cools_down(
    claude: anthropic.AsyncAnthropic,
    oai: openai.AsyncOpenAI,
    http: httpx.AsyncClient,
    db: Database,
    fake_log: FakeLog,
) -> None:
    raw = await claude.messages.with_raw_response.create(model="two-deps", max_tokens=50, messages=hello())
    msg = await raw.parse()
    assert msg.content[0].text == text_of(8) and msg.model == "two-deps"
    # The primary answered 529 with retry-after: the same request went to the secondary at once.
    assert await fake_log.deployments() == ["overloaded", "ok-a"]
    row = await ledger_row(db, raw.headers["request-id"])
    assert (row.status, row.attempts, row.upstream, row.output_tokens) == (200, 2, "ok-a", 8)

    state = await upstreams(http)
    primary, secondary = state["two-deps:primary"], state["two-deps:secondary"]
    assert primary["state"] == "cooldown" and 1.5 < primary["cooldown_remaining_s"] <= 3
    assert primary["cooldowns"] == 1 and "Upstream 'overloaded' error" in primary["last_error"]
    assert secondary["state"] == "healthy" and secondary["in_flight"] == 0

    # While the primary cools down, requests skip it: one attempt, straight to the secondary.
    await fake_log.clear()
    chunks = [
        c async for c in await oai.chat.completions.create(model="two-deps", messages=hello(), stream=True)
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text_of(8)
    assert await fake_log.deployments() == ["ok-a"]


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
async def test_exhausted_budget_returns_the_last_error_in_the_callers_shape(
    claude: anthropic.AsyncAnthropic,
    oai: openai.AsyncOpenAI,
    db: Database,
    fake_log: FakeLog,
    endpoint: str,
) -> None:
    if endpoint == "anthropic":
        with pytest.raises(anthropic.InternalServerError) as info:
            await claude.messages.create(model="all-fail", max_tokens=20, messages=hello())
        err: Any = info.value
        assert err.status_code == 500 and err.body["error"]["type"] == "api_error"
    else:
        with pytest.raises(openai.InternalServerError) as oinfo:
            await oai.chat.completions.create(model="all-fail", messages=hello())
        err = oinfo.value
        assert err.status_code == 500 and err.body["type"] == "server_error"
    assert "Upstream 'broken" in str(err.body)
    attempts = await fake_log.deployments()
    assert len(attempts) == 3 and set(attempts) == {"broken", "broken2"}
    row = await ledger_row(db, err.response.headers["request-id"])
    assert (row.status, row.attempts, row.error_kind) == (500, 3, "api_error")


async def test_fallback_model_served_in_another_format(
    claude: anthropic.AsyncAnthropic, db: Database, fake_log: FakeLog
) -> None:
    async with claude.messages.stream(model="with-fallback", max_tokens=50, messages=hello()) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == text_of(8) and final.usage.output_tokens == 8
    entries = await fake_log.entries()
    # The model's own deployment twice (a retry after backoff), then the fallback model's
    # OpenAI-format deployment with a request rebuilt for that format.
    assert [e["headers"]["x-dep"] for e in entries] == ["broken", "broken", "ok-o"]
    assert entries[-1]["path"] == "/v1/chat/completions"
    assert (
        entries[-1]["body"]["model"] == "fake-gpt" and entries[-1]["body"]["stream_options"]["include_usage"]
    )
    rows: list[UsageRecord] = []
    deadline = time.monotonic() + 10
    while not rows:  # the ledger is written in batches (50 ms): wait for the row
        assert time.monotonic() < deadline, "no ledger row for the with-fallback request"
        await asyncio.sleep(0.05)
        async with db.session() as s:
            rows = list(await s.scalars(select(UsageRecord).where(UsageRecord.model == "with-fallback")))
    assert len(rows) == 1  # one request, one ledger row
    assert (rows[0].attempts, rows[0].upstream, rows[0].upstream_model, rows[0].status) == (
        3,
        "ok-o",
        "fake-gpt",
        200,
    )


async def test_connection_errors_go_to_the_next_deployment(
    oai: openai.AsyncOpenAI, fake_log: FakeLog, http: httpx.AsyncClient
) -> None:
    raw = await oai.chat.completions.with_raw_response.create(model="conn-fail", messages=hello())
    assert raw.parse().choices[0].message.content == text_of(8)
    assert await fake_log.deployments() == ["ok-b"]  # the dead one never reached the fake
    state = await upstreams(http)
    assert "could not be reached" in state["conn-fail:dead/fake-claude"]["last_error"]


async def test_client_errors_are_not_retried(
    claude: anthropic.AsyncAnthropic, db: Database, fake_log: FakeLog
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude.messages.create(model="no-retry", max_tokens=20, messages=hello())
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert await fake_log.deployments() == ["bad-request"]
    row = await ledger_row(db, info.value.response.headers["request-id"])
    assert (row.status, row.attempts) == (400, 1)


@pytest.mark.parametrize("knob", ["cut_after=4", "error_after=4"])
async def test_nothing_is_retried_after_the_first_byte(
    http: httpx.AsyncClient, rgw: Gateway, db: Database, fake_log: FakeLog, knob: str
) -> None:
    body = {"model": "plain", "max_tokens": 50, "stream": True, "messages": hello(f"[[fake {knob}]]")}
    resp = await http.post("/v1/messages", json=body, headers={"x-api-key": rgw.key})
    assert resp.status_code == 200
    frames = resp.text.strip().split("\n\n")
    assert frames[-1].startswith("event: error")
    kind = orjson.loads(frames[-1].split("data: ", 1)[1])["error"]["type"]
    assert kind == ("api_error" if knob.startswith("cut") else "overloaded_error")
    assert await fake_log.deployments() == ["ok-a"]
    row = await ledger_row(db, resp.headers["request-id"])
    assert (row.status, row.attempts) == (502, 1)


# What each endpoint answers for an upstream status (wire.md A.7, B.5, D.7).
ANTHROPIC_STATUS = {502: 529, 503: 529, 422: 400}
OPENAI_STATUS = {502: 503, 503: 503, 529: 503}


@pytest.mark.parametrize("code", [*RETRIED, *NOT_RETRIED, *CREDENTIALS])
async def test_status_matrix_before_the_first_byte(
    http: httpx.AsyncClient, rgw: Gateway, db: Database, fake_log: FakeLog, code: int
) -> None:
    """Every upstream error status, on three deployments (two Anthropic-format, one
    OpenAI-format): retried ones use all three, client errors one; the client gets the last
    error in its own envelope and status; one ledger row with the attempts."""
    attempts = 1 if code in NOT_RETRIED else 3
    seen = 502 if code in CREDENTIALS else code  # what the gateway makes of the upstream's status
    for endpoint in ("anthropic", "openai"):
        await fake_log.clear()
        messages = hello(f"[[fake status={code}]]")
        if endpoint == "anthropic":
            body = {"model": f"status-{code}", "max_tokens": 20, "messages": messages}
            resp = await http.post("/v1/messages", json=body, headers={"x-api-key": rgw.key})
            assert resp.status_code == ANTHROPIC_STATUS.get(seen, seen)
            error = resp.json()["error"]
            assert resp.json()["type"] == "error" and error["type"] in (
                "invalid_request_error",
                "authentication_error",
                "permission_error",
                "not_found_error",
                "request_too_large",
                "rate_limit_error",
                "api_error",
                "overloaded_error",
                "timeout_error",
            )
        else:
            body = {"model": f"status-{code}", "messages": messages}
            resp = await http.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {rgw.key}"}
            )
            assert resp.status_code == OPENAI_STATUS.get(seen, seen)
            error = resp.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
        assert error["message"].startswith("Upstream 'ok-")
        tried = await fake_log.deployments()
        assert len(tried) == attempts and len(set(tried)) == attempts  # never the same one twice here
        row = await ledger_row(db, resp.headers["request-id"])
        assert (row.status, row.attempts) == (seen, attempts)


async def test_deployment_rpm_spills_to_the_next_priority(oai: openai.AsyncOpenAI, fake_log: FakeLog) -> None:
    for _ in range(3):
        await oai.chat.completions.create(model="rpm-model", messages=hello())
    assert await fake_log.deployments() == ["ok-a", "ok-a", "ok-b"]


# -- timeouts and keep-alives ----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
async def test_first_byte_timeout_is_a_504_in_the_callers_shape(
    claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI, db: Database, fake_log: FakeLog, endpoint: str
) -> None:
    started = time.monotonic()
    if endpoint == "anthropic":
        with pytest.raises(anthropic.APIStatusError) as info:
            await claude.messages.create(model="slow-model", max_tokens=20, messages=hello(), stream=True)
        err: Any = info.value
        assert err.status_code == 504 and err.body["error"]["type"] == "timeout_error"
    else:
        with pytest.raises(openai.InternalServerError) as oinfo:
            await oai.chat.completions.create(model="slow-model", messages=hello())
        err = oinfo.value
        assert err.status_code == 504 and (err.body["type"], err.body["code"]) == ("server_error", "timeout")
    assert "did not answer within 0.3 s" in str(err.body)
    assert time.monotonic() - started < 5
    assert len(await fake_log.deployments()) == 3  # timeouts are retried within the budget
    row = await ledger_row(db, err.response.headers["request-id"])
    assert (row.status, row.error_kind, row.attempts) == (504, "timeout_error", 3)


# -- operations: admin view, metrics, readiness ----------------------------------------------


async def test_admin_upstreams_needs_the_admin_key(http: httpx.AsyncClient, rgw: Gateway) -> None:
    assert (await http.get("/admin/upstreams")).status_code == 401
    resp = await http.get("/admin/upstreams", headers={"x-api-key": rgw.key})
    assert resp.status_code == 403 and resp.json()["error"]["type"] == "permission_error"
    state = await upstreams(http)
    assert {"plain:ok-a/fake-claude", "rpm-model:limited", "rpm-model:spill"} <= set(state)
    assert state["rpm-model:limited"]["rpm"]["limit"] == 2


async def test_metrics(http: httpx.AsyncClient, rgw: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model="plain", max_tokens=50, messages=hello()) as stream:
        await stream.get_final_message()
    ok = 'claudestore_requests_total{endpoint="anthropic",model="plain",upstream="ok-a",status="200"}'
    values: dict[str, float] = {}
    # The stream's last event reaches the client just before the gateway counts the request
    # finished: wait (briefly) for the count rather than race it.
    for _ in range(50):
        resp = await http.get("/metrics")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(
            "text/plain; version=0.0.4"
        )
        text = resp.text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        if ok in values:
            break
        await asyncio.sleep(0.02)
    assert values[ok] >= 1
    assert values['claudestore_tokens_total{model="plain",upstream="ok-a",type="output"}'] >= 8
    assert values['claudestore_fallbacks_total{model="with-fallback",fallback="fb-target"}'] == 1
    assert values['claudestore_cooldowns_total{model="two-deps",deployment="primary"}'] >= 1
    assert (
        values['claudestore_retries_total{model="all-fail",deployment="broken/fake-claude",reason="500"}']
        >= 1
    )
    assert (
        values['claudestore_retries_total{model="slow-model",deployment="slow/fake-claude",reason="timeout"}']
        >= 1
    )
    assert (
        values[
            'claudestore_upstream_attempts_total{model="two-deps",upstream="overloaded",deployment="primary",result="529"}'
        ]
        >= 1
    )
    ttft = 'claudestore_time_to_first_token_seconds_count{endpoint="anthropic",model="plain",upstream="ok-a"}'
    assert values[ttft] >= 1
    assert (
        values[
            'claudestore_request_duration_seconds_bucket{endpoint="anthropic",model="plain",upstream="ok-a",le="+Inf"}'
        ]
        >= 1
    )
    assert values["claudestore_streams_in_flight"] == 0 and values["claudestore_requests_in_flight"] == 0
    assert values["claudestore_draining"] == 0
    state = 'claudestore_deployment_state{model="all-fail",deployment="broken/fake-claude",upstream="broken",state="%s"}'
    assert sum(values[state % s] for s in ("healthy", "cooldown", "half_open")) == 1


async def test_readyz(http: httpx.AsyncClient) -> None:
    resp = await http.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "checks": {"database": "ok"}}
