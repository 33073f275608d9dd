"""Metering end to end: a real gateway, accounts made through the admin API, the ledger read
back from the database. One ledger row per request whatever happens, with the usage the
upstream reported, priced exactly; no overspend under concurrency; limits shared through Redis.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from sqlalchemy import select

from claudestore.fake_upstream.script import count_input_tokens
from claudestore.storage.billing_models import Account, UsageRecord
from claudestore.storage.db import Database
from tests.support.redis import redis_url, require_redis
from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

# USD per million tokens -> nanos per token: times 1000.
PRICE = {"input": "3", "output": "15", "cache_write": "3.75", "cache_read": "0.30"}


def cost_nanos(row: UsageRecord) -> int:
    return (
        row.input_tokens * 3000
        + row.output_tokens * 15000
        + row.cache_write_tokens * 3750
        + row.cache_read_tokens * 300
    )


@pytest_asyncio.fixture(loop_scope="session")
async def admin(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    ) as client:
        for model in ("claude-test", "gpt-test"):
            (await client.put(f"/admin/prices/{model}", json=PRICE)).raise_for_status()
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def db(gateway: Gateway) -> AsyncIterator[Database]:
    database = Database(gateway.database_url)
    yield database
    await database.close()


async def make_customer(admin: httpx.AsyncClient, *, credit_usd: str = "100", **plan: Any) -> tuple[int, str]:
    """A fresh account on a fresh plan, with credit; returns (account id, API key)."""
    name = f"t-{secrets.token_hex(4)}"
    (await admin.post("/admin/plans", json={"name": name, **plan})).raise_for_status()
    account = (await admin.post("/admin/accounts", json={"name": name})).json()
    (
        await admin.post(f"/admin/accounts/{account['id']}/subscription", json={"plan": name})
    ).raise_for_status()
    (await admin.post(f"/admin/accounts/{account['id']}/credit", json={"usd": credit_usd})).raise_for_status()
    key = (await admin.post(f"/admin/accounts/{account['id']}/keys", json={"name": name})).json()["key"]
    return account["id"], key


async def ledger_row(db: Database, request_id: str) -> UsageRecord:
    deadline = time.monotonic() + 10
    while True:
        async with db.session() as s:
            row = await s.scalar(select(UsageRecord).where(UsageRecord.request_id == request_id))
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no ledger row for {request_id}"
        await asyncio.sleep(0.05)


async def balance(db: Database, account_id: int) -> int:
    async with db.session() as s:
        account = await s.get(Account, account_id)
        assert account is not None
        return account.balance_nanos


def request(
    endpoint: str, model: str, text: str, *, stream: bool, max_tokens: int = 1000
) -> tuple[str, dict]:
    if endpoint == "anthropic":
        body = {
            "model": model,
            "max_tokens": max_tokens,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
        return "/v1/messages", body
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }
    return "/v1/chat/completions", body


def headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}


CASES = [
    # (directive, expected output tokens, expected stop reason in the ledger)
    ("[[fake tokens=6 cache_read=7 cache_write=3]]", 6, "end_turn"),
    ("[[fake tokens=40]]", 5, "max_tokens"),  # max_tokens=5 below
]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
@pytest.mark.parametrize("case", CASES, ids=["cache", "max_tokens"])
async def test_ledger_row_equals_upstream_usage(
    admin: httpx.AsyncClient,
    db: Database,
    gateway: Gateway,
    fake_upstream: FakeUpstream,
    model: str,
    endpoint: str,
    stream: bool,
    case: tuple[str, int, str],
) -> None:
    directive, output, stop = case
    account_id, key = await make_customer(admin)
    before = await balance(db, account_id)
    path, body = request(
        endpoint,
        model,
        f"count these words {directive}",
        stream=stream,
        max_tokens=5 if stop == "max_tokens" else 1000,
    )
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        resp = await client.post(path, json=body, headers=headers(key))
        assert resp.status_code == 200, resp.text
    sent = fake_upstream.last_request()
    fmt = "anthropic" if model == "claude-test" else "openai"
    row = await ledger_row(db, resp.headers["request-id"])
    assert row.account_id == account_id and row.status == 200 and row.streamed is stream
    assert row.model == model and row.endpoint == endpoint
    assert row.input_tokens == count_input_tokens(sent["body"], fmt)
    assert row.output_tokens == output
    assert row.stop_reason == stop
    if "cache" in directive:
        assert (row.cache_read_tokens, row.cache_write_tokens) == (7, 3)
    assert row.cost_nanos == cost_nanos(row) > 0
    deadline = time.monotonic() + 5
    while await balance(db, account_id) != before - row.cost_nanos:
        assert time.monotonic() < deadline, "balance not charged with the ledger row"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
async def test_client_disconnect_is_billed_for_what_was_generated(
    admin: httpx.AsyncClient, db: Database, gateway: Gateway, fake_upstream: FakeUpstream, model: str
) -> None:
    _, key = await make_customer(admin)
    path, body = request("anthropic", model, "long answer [[fake tokens=400 delay_ms=10]]", stream=True)
    seen = 0
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        client.stream("POST", path, json=body, headers=headers(key)) as resp,
    ):
        request_id = resp.headers["request-id"]
        async for line in resp.aiter_lines():
            if line.startswith("event: content_block_delta"):
                seen += 1
                if seen == 5:
                    break
    row = await ledger_row(db, request_id)
    assert row.client_disconnected and row.status == 499 and row.streamed
    # At least what the client saw, and far less than the 400 the upstream would have made.
    assert 5 <= row.output_tokens < 100
    if model == "claude-test":  # the Anthropic upstream reported input tokens in message_start
        assert row.input_tokens == count_input_tokens(fake_upstream.last_request()["body"], "anthropic")
    assert row.cost_nanos == cost_nanos(row)


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
async def test_mid_stream_upstream_failure_is_recorded(
    admin: httpx.AsyncClient, db: Database, gateway: Gateway, model: str
) -> None:
    _, key = await make_customer(admin)
    path, body = request("anthropic", model, "fail soon [[fake tokens=50 error_after=8]]", stream=True)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        resp = await client.post(path, json=body, headers=headers(key))
    assert resp.status_code == 200 and "event: error" in resp.text
    row = await ledger_row(db, resp.headers["request-id"])
    assert row.status == 502 and row.error_kind is not None and not row.client_disconnected
    assert row.output_tokens >= 1  # the deltas that reached the client are billed
    assert row.cost_nanos == cost_nanos(row)


async def test_refused_requests_are_recorded_unbilled(
    admin: httpx.AsyncClient, db: Database, gateway: Gateway
) -> None:
    _, key = await make_customer(admin, allowed_models=["gpt-*"])
    path, body = request("anthropic", "claude-test", "hello", stream=False)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        resp = await client.post(path, json=body, headers=headers(key))
    assert resp.status_code == 403, resp.text
    assert "not included in your plan" in resp.json()["error"]["message"]
    row = await ledger_row(db, resp.headers["request-id"])
    assert (row.status, row.cost_nanos, row.output_tokens) == (403, 0, 0)


async def test_concurrent_streams_cannot_overspend(
    admin: httpx.AsyncClient, db: Database, gateway: Gateway
) -> None:
    """200 concurrent streams against a balance that covers 50: 50 succeed, the rest get 402,
    and the balance ends at zero, never below it by more than one request's reservation."""
    price = {"input": "0", "output": "1000"}
    (await admin.put("/admin/prices/claude-budget", json=price)).raise_for_status()
    # Each request reserves max_tokens=10 output tokens at $1000/Mtok = $0.01; actual use is the same.
    account_id, key = await make_customer(admin, credit_usd="0.50")
    model = "claude-budget"
    path, body = request("anthropic", model, "go [[fake tokens=10 delay_ms=30]]", stream=True, max_tokens=10)

    async def one(client: httpx.AsyncClient) -> int:
        async with client.stream("POST", path, json=body, headers=headers(key)) as resp:
            await resp.aread()
            return resp.status_code

    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as client:
        statuses = await asyncio.gather(*(one(client) for _ in range(200)))
    assert statuses.count(200) == 50, sorted(set(statuses))
    assert statuses.count(402) == 150
    reservation = 10 * 1_000_000
    deadline = time.monotonic() + 10
    while True:
        left = await balance(db, account_id)
        async with db.session() as s:
            rows = (await s.scalars(select(UsageRecord).where(UsageRecord.account_id == account_id))).all()
        if len(rows) == 200 and left == 500_000_000 - sum(r.cost_nanos for r in rows):
            break
        assert time.monotonic() < deadline, (len(rows), left)
        await asyncio.sleep(0.1)
    assert left >= -reservation
    assert left == 0
    assert sum(1 for r in rows if r.status == 402 and r.cost_nanos == 0) == 150


@pytest_asyncio.fixture(loop_scope="session")
async def two_gateways(tmp_path: Path, fake_upstream: FakeUpstream) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two gateway processes on one database, sharing limits through Redis."""
    url = redis_url()
    await require_redis(url)
    limits = {"redis_url": url, "redis_prefix": f"cs-test-{secrets.token_hex(4)}:"}
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first = start_gateway(tmp_path, fake_upstream, db_url, name="gw1", limits=limits)
    second = start_gateway(tmp_path, fake_upstream, db_url, name="gw2", limits=limits)
    yield first, second
    stop(first.proc)
    stop(second.proc)


async def test_two_processes_share_one_rpm_limit(two_gateways: tuple[Gateway, Gateway]) -> None:
    first, second = two_gateways
    async with httpx.AsyncClient(
        base_url=first.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    ) as admin:
        _, key = await make_customer(admin, rpm=10)
    path, body = request("anthropic", "claude-test", "hi [[fake tokens=1]]", stream=False)
    statuses: list[int] = []
    retry_after: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(16):
            gw = first if i % 2 == 0 else second
            resp = await client.post(gw.url + path, content=orjson.dumps(body), headers=headers(key))
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                retry_after.append(resp.headers["retry-after"])
                assert resp.json()["error"]["type"] == "rate_limit_error"
            else:
                assert resp.headers["anthropic-ratelimit-requests-limit"] == "10"
                assert "x-ratelimit-limit-requests" not in resp.headers  # the other API's style
    assert statuses.count(200) == 10 and statuses.count(429) == 6, statuses
    assert all(int(v) >= 1 for v in retry_after)


async def test_cli_top_up_reaches_a_running_gateway(
    admin: httpx.AsyncClient, db: Database, gateway: Gateway
) -> None:
    """Credit added by the CLI (another process) is delivered to the gateway's live balance."""
    (await admin.put("/admin/prices/claude-budget", json={"input": "0", "output": "1000"})).raise_for_status()
    account_id, key = await make_customer(admin, credit_usd="0.01")  # one request of $0.01
    path, body = request("anthropic", "claude-budget", "go [[fake tokens=10]]", stream=False, max_tokens=10)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:

        async def call() -> int:
            return (await client.post(path, json=body, headers=headers(key))).status_code

        assert [await call(), await call()] == [200, 402]
        await asyncio.to_thread(gateway.cli, "credit", "add", str(account_id), "0.02")
        deadline = time.monotonic() + 10
        while (status := await call()) == 402:
            assert time.monotonic() < deadline, "the top-up never reached the gateway"
            await asyncio.sleep(0.2)
        assert status == 200
        assert [await call(), await call()] == [200, 402]


async def test_sigkill_loses_no_finished_request_beyond_the_window(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    """100 requests finish, the documented window (ledger flush interval, 50 ms) passes, the
    gateway is killed with SIGKILL: all 100 ledger rows are in the database."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"
    gw = start_gateway(tmp_path, fake_upstream, db_url, name="killed")
    try:
        async with httpx.AsyncClient(
            base_url=gw.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        ) as admin:
            account_id, key = await make_customer(admin)
        path, body = request("openai", "gpt-test", "hi [[fake tokens=3]]", stream=True)
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            ids = []
            for _ in range(100):
                resp = await client.post(path, json=body, headers=headers(key))
                assert resp.status_code == 200
                ids.append(resp.headers["request-id"])
        await asyncio.sleep(0.2)  # the durability window (50 ms) plus one SQLite write, with margin
        gw.proc.kill()
        gw.proc.wait()
    finally:
        stop(gw.proc)
    database = Database(db_url)
    try:
        async with database.session() as s:
            found = set(
                (
                    await s.scalars(
                        select(UsageRecord.request_id).where(UsageRecord.account_id == account_id)
                    )
                ).all()
            )
    finally:
        await database.close()
    assert found == set(ids)


async def test_both_sdks_raise_their_rate_limit_error_with_retry_after(
    admin: httpx.AsyncClient, gateway: Gateway
) -> None:
    import anthropic
    import openai

    _, key = await make_customer(admin, rpm=1)
    claude = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=key, max_retries=0)
    oai = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    message = [{"role": "user", "content": "hi [[fake tokens=1]]"}]
    await claude.messages.create(model="claude-test", max_tokens=5, messages=message)  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError) as a_err:
        await claude.messages.create(model="claude-test", max_tokens=5, messages=message)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as o_err:
        await oai.chat.completions.create(model="gpt-test", messages=message)  # type: ignore[arg-type]
    for err in (a_err.value, o_err.value):
        retry_after = float(err.response.headers["retry-after"])
        assert 1 <= retry_after <= 60  # both SDKs honour a retry-after in this range
        assert int(err.response.headers["retry-after-ms"]) >= 1000
    assert a_err.value.type == "rate_limit_error"
    assert (o_err.value.code, o_err.value.type) == ("rate_limit_exceeded", "requests")
