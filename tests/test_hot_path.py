"""Request-path mechanics kept cheap for issue 7 (performance), pinned to their slow equivalents:
the disconnect watch, settlement without a task, rate-limit header text, the key hash, the
garbage-collector threshold and the model check memo."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import math
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from claudestore.admission.accounting import MAX_TOKENS, Accounting, LivePrices, Ticket
from claudestore.admission.headers import _rfc3339, rate_limit_headers
from claudestore.admission.policy import Policy, PolicyCache
from claudestore.billing.ledger import LedgerWriter
from claudestore.billing.pricing import Price, PriceCache, PriceTable
from claudestore.core.errors import PermissionDenied, RateLimited
from claudestore.core.response import Usage
from claudestore.limits.base import Admission, Lease, Scope, Window
from claudestore.limits.memory import MemoryLimiter
from claudestore.server import gateway as gateway_module
from claudestore.server.generate import Drained, until_disconnect
from claudestore.server.outcome import Outcome
from claudestore.storage.keys import generate_key, hash_key

# -- until_disconnect: the work runs in the caller's task, one watcher task per request ------------


class Client:
    """An ASGI ``receive`` whose disconnect the test triggers."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def request(self) -> Any:
        return SimpleNamespace(receive=self.receive)


async def test_work_that_finishes_reports_the_client_present() -> None:
    client, registry = Client(), set()
    seen: list[asyncio.Task[Any] | None] = []

    async def work() -> None:
        seen.append(asyncio.current_task())
        assert asyncio.current_task() in registry  # listed for the drain while it runs
        await asyncio.sleep(0.01)

    assert await until_disconnect(client.request(), work(), registry) is False
    assert seen == [asyncio.current_task()]  # no task of its own
    assert not registry
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_disconnect_cancels_the_work_and_reports_it() -> None:
    client = Client()
    stopped = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    asyncio.get_running_loop().call_later(0.02, client.gone.set)
    started = time.monotonic()
    assert await until_disconnect(client.request(), work()) is True
    assert stopped.is_set() and time.monotonic() - started < 5
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the cancellation was ours: withdrawn
    await asyncio.sleep(0)  # and nothing is left pending on this task


async def test_a_disconnect_inside_a_timeout_is_no_timeout() -> None:
    client = Client()

    async def work() -> None:
        async with asyncio.timeout(10):
            await asyncio.sleep(30)

    asyncio.get_running_loop().call_later(0.02, client.gone.set)
    assert await until_disconnect(client.request(), work()) is True


async def test_work_errors_propagate() -> None:
    async def work() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await until_disconnect(Client().request(), work())


async def test_the_drain_ends_the_work_with_drained() -> None:
    registry: set[asyncio.Task[None]] = set()
    drained: set[asyncio.Task[None]] = set()

    def drain() -> None:  # what Gateway._drain does at the deadline
        for task in list(registry):
            drained.add(task)
            task.cancel()

    async def work() -> None:
        await asyncio.sleep(30)

    asyncio.get_running_loop().call_later(0.02, drain)
    with pytest.raises(Drained):
        await until_disconnect(Client().request(), work(), registry, drained)
    assert not registry and not drained
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_outside_propagates() -> None:
    client = Client()

    async def work() -> None:
        await asyncio.sleep(30)

    async def handler() -> bool:
        return await until_disconnect(client.request(), work())

    task = asyncio.ensure_future(handler())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_disconnect_after_the_work_is_not_reported() -> None:
    client = Client()

    async def work() -> None:
        await asyncio.sleep(0)

    assert await until_disconnect(client.request(), work()) is False
    client.gone.set()
    await asyncio.sleep(0.01)  # the watcher is gone: this task is not cancelled now
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


# -- settlement without a task ---------------------------------------------------------------------

PRICE = Price(Decimal(3), Decimal(15), Decimal("3.75"), Decimal("0.3"))


class NoDatabase:
    """Any query fails: settle_now must never need one."""


def accounting(prices: PriceCache, limiter: Any = None) -> Accounting:
    db: Any = NoDatabase()
    return Accounting(limiter or MemoryLimiter(), PolicyCache(db), prices, LedgerWriter(db))


def fresh_prices() -> LivePrices:
    prices = LivePrices(NoDatabase(), ttl=60)  # type: ignore[arg-type]
    prices._table, prices._loaded_at = PriceTable({"claude-*": PRICE}), time.monotonic()
    return prices


def outcome(key_id: int | None = 3) -> Outcome:
    out = Outcome("req_settle", "anthropic", key_id=key_id, model="claude-test", upstream="up")
    out.usage = Usage(input_tokens=1000, output_tokens=200)
    return out


async def customer_ticket(acct: Accounting) -> Ticket:
    policy = Policy(3, 7, scopes=(Scope("acct:7", 100, 10**9, 10),), balance_seed=10**12)
    return await acct.admit(policy, "claude-test", 3000, 500)


async def test_settle_now_prices_settles_and_records_like_settle() -> None:
    rows = []
    for sync in (True, False):
        acct = accounting(fresh_prices())
        ticket = await customer_ticket(acct)
        assert ticket.lease is not None
        out = outcome()
        if sync:
            assert acct.settle_now(ticket, out) is True
        else:
            await acct.settle(ticket, out)
        assert ticket.lease.settled and out.cost_nanos == 3000 * 1000 + 15 * 200 * 1000
        [row] = list(acct.ledger._pending)
        rows.append(row.params() | {"created_at": None})
        limiter = acct.limiter
        assert isinstance(limiter, MemoryLimiter)
        assert await limiter.balance(7) == 10**12 - out.cost_nanos
    assert rows[0] == rows[1]


async def test_settle_now_does_nothing_when_something_must_wait() -> None:
    cold = LivePrices(NoDatabase(), ttl=60)  # type: ignore[arg-type]
    plain = PriceCache(NoDatabase(), ttl=60)  # type: ignore[arg-type]
    for prices in (cold, plain):
        acct = accounting(prices)
        out = outcome()
        assert acct.settle_now(None, out) is False
        assert acct.ledger.pending == 0 and out.cost_nanos == 0

    class RemoteLimiter(MemoryLimiter):  # e.g. Redis: settling is a round trip
        settle_now = None  # type: ignore[assignment]

    acct = accounting(fresh_prices(), RemoteLimiter())
    ticket = await customer_ticket(acct)
    assert acct.settle_now(ticket, outcome()) is False
    assert ticket.lease is not None and not ticket.lease.settled and acct.ledger.pending == 0


async def test_settle_now_without_a_key_or_usage() -> None:
    acct = accounting(LivePrices(NoDatabase(), ttl=60))  # type: ignore[arg-type]
    assert acct.settle_now(None, outcome(key_id=None)) is True  # not authenticated: no row
    assert acct.ledger.pending == 0
    unused = outcome()
    unused.usage = Usage()
    assert acct.settle_now(None, unused) is True  # nothing to price: no table needed
    assert acct.ledger.pending == 1 and unused.cost_nanos == 0


async def test_absurd_token_counts_are_capped_for_the_limiter() -> None:
    """A max_tokens near 2**64 (the JSON parser takes integers up to that) and an upstream
    reporting as much usage: the limiter holds a capped count (its log is 64-bit), so a plan with
    an rpm limit only admits and settles the request instead of failing it, and a tpm limit
    refuses it as too large."""
    acct = accounting(fresh_prices())
    rpm_only = Policy(3, 7, scopes=(Scope("acct:7", 100, None, 10),))
    ticket = acct.admit_now(rpm_only, "claude-test", 3000, 2**64 - 1)
    assert ticket is not None and ticket.lease is not None
    assert ticket.lease.admission.tokens == MAX_TOKENS
    out = outcome()
    out.usage = Usage(input_tokens=2**63, output_tokens=2**63)
    assert acct.settle_now(ticket, out) is True
    assert ticket.lease.settled and acct.ledger.pending == 1
    limiter = acct.limiter
    assert isinstance(limiter, MemoryLimiter)
    assert limiter._scopes["acct:7"].total == MAX_TOKENS  # the actual use, capped
    assert acct.admit_now(rpm_only, "claude-test", 3000, 10) is not None  # the concurrency slot was freed
    with pytest.raises(RateLimited) as refused:
        acct.admit_now(Policy(3, 8, scopes=(Scope("acct:8", None, 10**9),)), "claude-test", 3000, 2**64 - 1)
    assert refused.value.code == "request_too_large_for_tpm"


async def test_memory_limiter_settle_now_is_settle() -> None:
    limiter = MemoryLimiter()
    adm = Admission(
        scopes=(Scope("acct:1", 10, 1000, 1),), tokens=100, account_id=1, cost_nanos=50, balance_seed=1000
    )
    lease: Lease = await limiter.acquire(adm)
    limiter.settle_now(lease, 40, 20)
    assert lease.settled and await limiter.balance(1) == 1000 - 20
    limiter.settle_now(lease, 40, 20)  # once only
    assert await limiter.balance(1) == 980
    await limiter.acquire(adm)  # the concurrency slot was given back


# -- rate-limit headers, key hash, GC threshold, model check ----------------------------------------


def test_reset_time_text_is_datetime_s() -> None:
    rng = random.Random(7)
    fractions = [0.0, 0.5e-6, 0.4999999, 0.9999994999, 0.9999995, math.nextafter(1.0, 0)]
    for _ in range(20_000):
        whole = rng.randrange(1_700_000_000, 1_900_000_000)
        for frac in (rng.random(), rng.choice(fractions)):
            ts = whole + frac
            assert _rfc3339(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), ts


def test_rate_limit_headers_are_encoded_in_each_apis_style() -> None:
    now = time.time()
    lease = Lease(Admission((), 1), requests=Window(60, 0, now + 30), tokens=Window(1000, -5, now + 30.6))
    def lines(block: bytes) -> dict[bytes, bytes]:
        assert block.endswith(b"\r\n")
        return dict(line.split(b": ", 1) for line in block.split(b"\r\n")[:-1])

    assert lines(rate_limit_headers(lease, "anthropic")) == {
        b"anthropic-ratelimit-requests-limit": b"60",
        b"anthropic-ratelimit-requests-remaining": b"0",
        b"anthropic-ratelimit-requests-reset": _rfc3339(now + 30).encode(),
        b"anthropic-ratelimit-tokens-limit": b"1000",
        b"anthropic-ratelimit-tokens-remaining": b"0",  # over (settled above the reservation): never negative
        b"anthropic-ratelimit-tokens-reset": _rfc3339(now + 30.6).encode(),
    }
    openai = lines(rate_limit_headers(lease, "openai"))
    assert set(openai) == {
        b"x-ratelimit-%b-%b" % (what, kind)
        for what in (b"limit", b"remaining", b"reset")
        for kind in (b"requests", b"tokens")
    }
    assert openai[b"x-ratelimit-limit-tokens"] == b"1000" and openai[b"x-ratelimit-reset-requests"] in (b"29s", b"30s")
    assert rate_limit_headers(Lease(Admission((), 1), tokens=Window(5, 5, now)), "openai") == (
        b"x-ratelimit-limit-tokens: 5\r\nx-ratelimit-remaining-tokens: 5\r\nx-ratelimit-reset-tokens: 0ms\r\n"
    )
    assert rate_limit_headers(Lease(Admission((), 1)), "anthropic") == b""


def test_key_hash_is_hmac_sha256_of_the_pepper() -> None:
    for i in range(200):
        raw, pepper = generate_key(), f"pepper-{i % 3}".encode()
        assert hash_key(raw, pepper=pepper) == hmac.digest(pepper, raw.encode(), hashlib.sha256).hex()


def test_gc_young_threshold_is_raised_never_lowered() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        gateway_module.tune_gc()
        assert gc.get_threshold() == (gateway_module.GC_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(50_000, 5, 5)
        gateway_module.tune_gc()
        assert gc.get_threshold() == (50_000, 5, 5)
    finally:
        gc.set_threshold(*saved)


def test_the_startup_heap_is_frozen_out_of_full_collections() -> None:
    marker = [object()]  # alive before the freeze: left out of every later collection
    try:
        gateway_module.freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert all(o is not marker for o in gc.get_objects(generation=2))
        later = [object()]
        gc.collect()
        assert any(o is later for o in gc.get_objects(generation=2))  # new objects are scanned
    finally:
        gc.unfreeze()


def test_model_check_memo_keeps_refusing() -> None:
    policy = Policy(1, 2, plan_models=("claude-*",), key_models=("claude-sonnet-*", "claude-test"))
    for _ in range(2):
        policy.check_model("claude-test")
        for model in ("gpt-test", "claude-opus-4"):
            with pytest.raises(PermissionDenied):
                policy.check_model(model)
    assert policy == Policy(1, 2, plan_models=("claude-*",), key_models=("claude-sonnet-*", "claude-test"))
