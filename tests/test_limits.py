"""The limiter contract (``limits.base``), run identically on the memory and the Redis backend."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import cast

import pytest
import redis.asyncio as aioredis

from claudestore.core.errors import GatewayError, PaymentRequired, RateLimited
from claudestore.limits.base import PENDING_CREDIT_TTL, Admission, Lease, Limiter, Quota, Scope
from claudestore.limits.factory import make_limiter
from claudestore.limits.memory import MemoryLimiter
from claudestore.limits.redis import RedisLimiter
from tests.support.redis import LimiterFactory, limiter, limiter_factory, redis_limiter_factory

__all__ = ["limiter", "limiter_factory", "redis_limiter_factory"]  # fixtures, imported explicitly

KEY = "key:12"
ACCT = "acct:7"


def admission(
    *scopes: Scope,
    tokens: int = 10,
    cost: int = 0,
    seed: int | None = None,
    quota: Quota | None = None,
    seen: int = 0,
) -> Admission:
    """``seen``: the newest credit id the seed includes."""
    return Admission(
        scopes=scopes,
        tokens=tokens,
        account_id=7,
        cost_nanos=cost,
        balance_seed=seed,
        quota=quota,
        balance_credit_id=seen,
    )


async def refused(limiter: Limiter, adm: Admission) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await limiter.acquire(adm)
    return info.value


async def test_rpm_is_exact_and_the_window_slides(limiter_factory: LimiterFactory) -> None:
    limiter = limiter_factory(window=1.0)
    adm = admission(Scope(KEY, rpm=5))
    for _ in range(5):
        await limiter.acquire(adm)
    err = await refused(limiter, adm)
    assert isinstance(err, RateLimited) and err.status == 429 and err.code == "rate_limit_requests"
    assert err.retry_after == 1  # at least 1 s, even with a 1 s window
    assert err.message == "Rate limit of 5 requests per 1 s exceeded for this API key; retry after 1 s."
    await asyncio.sleep(1.1)
    for _ in range(5):
        await limiter.acquire(adm)
    await refused(limiter, adm)


@pytest.mark.parametrize("older", [3, 20])  # Redis reads 8 log entries at once: fewer, and more, expire
async def test_the_window_forgets_exactly_what_left_it(limiter_factory: LimiterFactory, older: int) -> None:
    limiter = limiter_factory(window=0.6)
    scope = Scope(KEY, rpm=30, tpm=1000)
    old = [await limiter.acquire(admission(scope, tokens=10)) for _ in range(older)]
    await limiter.settle(old[0], 4, 0)  # settled while in the window: counts 4, then leaves
    await asyncio.sleep(0.4)
    t1 = time.time()
    young = [await limiter.acquire(admission(scope, tokens=20)) for _ in range(2)]
    assert young[1].requests and young[1].tokens
    assert (young[1].requests.remaining, young[1].tokens.remaining) == (
        30 - older - 2,
        1000 - 4 - 10 * (older - 1) - 40,
    )
    await asyncio.sleep(0.3)  # the old ones have left the window, the young ones not
    await limiter.settle(old[1], 1, 0)  # a late settle of an entry no longer counted changes nothing
    await limiter.settle(young[0], 5, 0)
    lease = await limiter.acquire(admission(scope, tokens=30))
    assert lease.requests and lease.tokens
    assert (lease.requests.remaining, lease.tokens.remaining) == (27, 1000 - 5 - 20 - 30)
    assert abs(lease.requests.reset_at - (t1 + 0.6)) < 0.05  # the oldest entry left: young[0]
    # tokens: 945 left; a request of 960 waits until young[0] and young[1] leave (25 tokens)
    err = await refused(limiter, admission(scope, tokens=960))
    assert err.code == "rate_limit_tokens" and "55 tokens used" in err.message


async def test_rpm_message_names_limit_scope_and_retry(limiter: Limiter) -> None:
    adm = admission(Scope(KEY, rpm=60), Scope(ACCT, rpm=2))
    await limiter.acquire(adm)
    await limiter.acquire(adm)
    err = await refused(limiter, adm)
    assert err.retry_after is not None and 58 <= err.retry_after <= 60
    assert re.fullmatch(
        r"Rate limit of 2 requests per minute exceeded for this account; retry after (58|59|60) s\.",
        err.message,
    )


async def test_tpm_counts_reservations_then_actual_use(limiter: Limiter) -> None:
    scope = Scope(ACCT, tpm=100)
    first = await limiter.acquire(admission(scope, tokens=60))
    assert first.tokens is not None and first.tokens.remaining == 40
    err = await refused(limiter, admission(scope, tokens=60))
    assert isinstance(err, RateLimited) and err.code == "rate_limit_tokens"
    assert err.retry_after is not None and 58 <= err.retry_after <= 60
    assert "100 tokens per minute exceeded for this account" in err.message and "retry after" in err.message
    await limiter.settle(first, 20, 0)  # the window now holds the actual 20
    second = await limiter.acquire(admission(scope, tokens=60))
    assert second.tokens is not None and second.tokens.remaining == 20
    await limiter.settle(second, 80, 0)  # more than reserved: the window holds 100
    await refused(limiter, admission(scope, tokens=1))


async def test_request_larger_than_tpm_can_never_fit(limiter: Limiter) -> None:
    err = await refused(limiter, admission(Scope(KEY, tpm=100), tokens=101))
    assert isinstance(err, RateLimited) and err.status == 429 and err.code == "request_too_large_for_tpm"
    assert err.retry_after is None
    assert "101 tokens" in err.message and "100 tokens per minute" in err.message
    assert "never" in err.message and "this API key" in err.message


async def test_concurrency_and_release(limiter: Limiter) -> None:
    adm = admission(Scope(KEY, concurrency=2))
    a = await limiter.acquire(adm)
    await limiter.acquire(adm)
    err = await refused(limiter, adm)
    assert err.code == "concurrency_limit" and err.retry_after == 1
    assert (
        err.message == "Concurrency limit of 2 requests in flight reached for this API key; retry after 1 s."
    )
    await limiter.settle(a, 5, 0)
    await limiter.acquire(adm)
    await refused(limiter, adm)


async def test_double_settle_is_a_noop(limiter: Limiter) -> None:
    adm = admission(Scope(KEY, concurrency=1, tpm=1000), tokens=100, cost=30, seed=100)
    lease = await limiter.acquire(adm)
    await limiter.settle(lease, 10, 10)
    assert lease.settled and await limiter.balance(7) == 90
    await limiter.settle(lease, 10, 10)
    assert await limiter.balance(7) == 90
    again = await limiter.acquire(adm)
    assert again.tokens is not None and again.tokens.remaining == 1000 - 10 - 100
    await refused(limiter, adm)  # still one slot: the second settle released nothing


async def test_quota(limiter: Limiter) -> None:
    end = time.time() + 3600
    quota = Quota("quota:7:1", limit=100, used_seed=50, period_end=end)
    assert await limiter.quota_used(quota.name) is None  # not seeded yet: the loader sums the ledger
    first = await limiter.acquire(admission(tokens=30, quota=quota))  # 80 used
    assert await limiter.quota_used(quota.name) == 80
    err = await refused(limiter, admission(tokens=30, quota=quota))
    assert isinstance(err, RateLimited) and err.code == "quota_exceeded"
    assert err.retry_after is not None and abs(err.retry_after - 3600) <= 2
    assert "quota of 100 tokens" in err.message and "80 used" in err.message and "retry after" in err.message
    await limiter.settle(first, 10, 0)  # 60 used
    await limiter.acquire(admission(tokens=30, quota=quota))  # 90 used
    await refused(limiter, admission(tokens=11, quota=quota))
    await limiter.acquire(admission(tokens=10, quota=quota))  # exactly the limit
    assert await limiter.quota_used(quota.name) == 100


async def test_balance_admits_exactly_what_it_covers_under_concurrency(limiter: Limiter) -> None:
    adm = admission(cost=10, seed=500)
    results = await asyncio.gather(*(limiter.acquire(adm) for _ in range(200)), return_exceptions=True)
    leases = [r for r in results if isinstance(r, Lease)]
    errors = [r for r in results if not isinstance(r, Lease)]
    assert len(leases) == 50 and len(errors) == 150
    assert all(isinstance(e, PaymentRequired) and e.code == "insufficient_balance" for e in errors)
    assert await limiter.balance(7) == 0
    await limiter.settle(leases[0], 1, 4)  # 6 nanos back
    assert await limiter.balance(7) == 6


async def test_settle_gives_back_and_may_overshoot(limiter: Limiter) -> None:
    lease = await limiter.acquire(admission(cost=100, seed=1000))
    assert await limiter.balance(7) == 900
    await limiter.settle(lease, 1, 40)
    assert await limiter.balance(7) == 960
    lease = await limiter.acquire(admission(cost=100, seed=1000))  # the seed is used only once
    await limiter.settle(lease, 1, 1000)  # cost more than reserved: one reservation's overshoot
    assert await limiter.balance(7) == -40
    err = await refused(limiter, admission(cost=0, seed=1000))
    assert isinstance(err, PaymentRequired) and err.status == 402
    assert "balance" in err.message and "-$0.00000004" in err.message


async def test_credit_applies_once_per_id(limiter: Limiter) -> None:
    await limiter.credit(7, 50, 1)  # no counter yet: kept for the seed
    assert await limiter.balance(7) is None
    await limiter.acquire(admission(cost=10, seed=1000, seen=1))  # the seed includes credit 1
    assert await limiter.balance(7) == 990
    await limiter.credit(7, 50, 1)  # a replay of the credit the seed already includes
    assert await limiter.balance(7) == 990
    await limiter.credit(7, 25, 2)
    await limiter.credit(7, 25, 2)
    await limiter.credit(7, 5, 3)
    assert await limiter.balance(7) == 1020


async def test_a_credit_that_came_before_a_stale_seed_is_added_to_it(limiter: Limiter) -> None:
    """The seed (balance 0, no credit yet) was read before the top-up committed; the top-up
    reached the limiter before the first admission seeded the counter: not lost."""
    err = await refused(limiter, admission(cost=300, seed=0))  # refused: nothing seeded
    assert isinstance(err, PaymentRequired)
    await limiter.credit(7, 1000, 4)
    await limiter.credit(7, 500, 5)
    assert await limiter.balance(7) is None
    await refused(limiter, admission(cost=2000, seed=0))  # 1,500 covers less: still nothing seeded
    await limiter.acquire(admission(cost=300, seed=0))  # the stale seed, with credits 4 and 5 added
    assert await limiter.balance(7) == 1200
    await limiter.credit(7, 1000, 4)  # delivered again (the poller, another process): once only
    await limiter.acquire(admission(cost=200, seed=0))
    assert await limiter.balance(7) == 1000


async def test_a_credit_the_seed_includes_is_not_counted_again(limiter: Limiter) -> None:
    """The seed was read after top-ups 4 and 5 committed; 5 reached the limiter before the
    counter was seeded, 4 only after (the poller is a second late): each counted once."""
    await limiter.credit(7, 500, 5)
    await limiter.credit(7, 70, 6)  # committed after the seed was read: added to it
    await limiter.acquire(admission(cost=100, seed=1500, seen=5))
    assert await limiter.balance(7) == 1470
    await limiter.credit(7, 1000, 4)  # late: the seed has it
    await limiter.credit(7, 500, 5)
    assert await limiter.balance(7) == 1470
    await limiter.credit(7, 30, 7)  # after the seed: added
    assert await limiter.balance(7) == 1500


async def test_a_credit_too_old_for_any_seed_in_use_is_not_kept(limiter: Limiter) -> None:
    """A credit made longer ago than PENDING_CREDIT_TTL (the poller's first scan of the table)
    is in every seed read since: not added to a seed that does not name it (a seed of an
    account without credit entries, say, read before the entry was imported)."""
    await limiter.credit(7, 1000, 3, created_at=time.time() - PENDING_CREDIT_TTL - 5)
    await limiter.credit(7, 10, 4, created_at=time.time() - 5)
    await limiter.acquire(admission(cost=0, seed=2000))
    assert await limiter.balance(7) == 2010


async def test_a_refusal_charges_nothing(limiter: Limiter) -> None:
    key, acct = Scope(KEY, rpm=1), Scope(ACCT, rpm=10, tpm=1000, concurrency=5)
    quota = Quota("quota:7:2", limit=30, used_seed=0, period_end=time.time() + 3600)
    both = admission(key, acct, tokens=10, cost=100, seed=1000, quota=quota)
    await limiter.acquire(both)
    err = await refused(limiter, both)  # the key's rpm refuses
    assert err.code == "rate_limit_requests" and "this API key" in err.message
    err = await refused(limiter, admission(acct, tokens=10, cost=5000, seed=1000, quota=quota))
    assert isinstance(err, PaymentRequired)  # the balance refuses
    lease = await limiter.acquire(admission(acct, tokens=10, cost=100, seed=1000, quota=quota))
    assert lease.requests and lease.tokens and (lease.requests.remaining, lease.tokens.remaining) == (8, 980)
    assert await limiter.balance(7) == 800
    await limiter.acquire(admission(acct, tokens=10, quota=quota))  # the quota's last 10 tokens
    assert (await refused(limiter, admission(acct, tokens=1, quota=quota))).code == "quota_exceeded"
    await refused(limiter, admission(Scope(ACCT, concurrency=3)))  # the three admitted hold slots
    await limiter.acquire(admission(Scope(ACCT, concurrency=4)))  # the refused ones hold none


async def test_windows_report_the_tightest_scope(limiter: Limiter) -> None:
    scopes = (Scope(KEY, rpm=10, tpm=1000), Scope(ACCT, rpm=5, tpm=5000))
    t0 = time.time()
    first = await limiter.acquire(admission(*scopes, tokens=100))
    assert first.requests and first.tokens and (first.requests.limit, first.requests.remaining) == (5, 4)
    assert (first.tokens.limit, first.tokens.remaining) == (1000, 900)
    assert abs(first.requests.reset_at - (t0 + 60)) < 2
    await asyncio.sleep(0.05)
    second = await limiter.acquire(admission(*scopes, tokens=100))
    assert second.requests is not None and second.tokens is not None
    assert (second.requests.remaining, second.tokens.remaining) == (3, 800)
    assert second.requests.reset_at == pytest.approx(first.requests.reset_at, abs=1e-3)  # the oldest entry
    plain = await limiter.acquire(admission(Scope("key:13", concurrency=3)))
    assert plain.requests is None and plain.tokens is None


async def test_an_expired_lease_frees_its_slot(limiter_factory: LimiterFactory) -> None:
    limiter = limiter_factory(lease_ttl=0.3)
    adm = admission(Scope(KEY, concurrency=1))
    stale = await limiter.acquire(adm)
    await refused(limiter, adm)
    await asyncio.sleep(0.4)  # the holder "crashed": its lease ran out
    await limiter.acquire(adm)
    await limiter.settle(stale, 1, 0)  # a late settle releases only its own (gone) slot
    await refused(limiter, adm)


TWO_PROCESSES = """
import asyncio, sys, time
from claudestore.core.errors import RateLimited
from claudestore.limits.base import Admission, Scope
from claudestore.limits.redis import RedisLimiter

async def main(url, prefix, start):
    limiter = RedisLimiter(url, prefix=prefix)
    await limiter.balance(0)  # connected before the start
    await asyncio.sleep(max(0.0, start - time.time()))
    adm = Admission(scopes=(Scope("acct:1", rpm=10),), tokens=1)
    async def one():
        try:
            await limiter.acquire(adm)
            return 1
        except RateLimited:
            return 0
    print(sum(await asyncio.gather(*(one() for _ in range(10)))))
    await limiter.close()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def test_two_processes_share_one_limit(redis_limiter_factory: LimiterFactory) -> None:
    f = redis_limiter_factory
    start = time.time() + 1.5
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", TWO_PROCESSES, f.url, f.prefix, str(start), stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=15)
    assert [p.returncode for p in procs] == [0, 0]
    admitted = [int(out.decode().strip()) for out, _ in outputs]
    assert sum(admitted) == 10, admitted


async def test_redis_keys_expire_but_the_balance_does_not(redis_limiter_factory: LimiterFactory) -> None:
    limiter = redis_limiter_factory()
    quota = Quota("quota:7:3", limit=100, used_seed=0, period_end=time.time() + 3600)
    await limiter.acquire(admission(Scope(KEY, rpm=5, concurrency=2), cost=1, seed=10, quota=quota))
    client = aioredis.Redis.from_url(redis_limiter_factory.url)
    try:
        p = redis_limiter_factory.prefix
        for key, low, high in (
            (f"win:{KEY}", 60_000, 61_000),
            (f"inf:{KEY}", 900_000, 901_000),
            ("quota:7:3", (3600 + 86_400 - 5) * 1000, (3600 + 86_400) * 1000),
        ):
            assert low <= await client.pttl(p + key) <= high, key
        assert await client.pttl(f"{p}bal:7") == -1
    finally:
        await client.aclose()


async def test_redis_recovers_from_noscript(redis_limiter_factory: LimiterFactory) -> None:
    limiter = redis_limiter_factory()
    await limiter.acquire(admission(Scope(KEY, rpm=5)))
    cast(RedisLimiter, limiter)._shas["acquire"] = "0" * 40  # as after a server restart or SCRIPT FLUSH
    lease = await limiter.acquire(admission(Scope(KEY, rpm=5)))
    assert lease.requests is not None and lease.requests.remaining == 3


async def test_memory_forgets_idle_scopes() -> None:
    limiter = MemoryLimiter(window=0.2, max_scopes=10)
    for i in range(20):
        await limiter.acquire(admission(Scope(f"key:{i}", rpm=5)))
    assert len(limiter._scopes) == 10
    await asyncio.sleep(0.25)
    await limiter.acquire(admission(Scope("key:99", rpm=5)))  # sweeps the idle ones
    assert list(limiter._scopes) == ["key:99"]


async def test_factory() -> None:
    assert isinstance(make_limiter(None), MemoryLimiter)
    limiter = make_limiter("redis://127.0.0.1:1/0")  # connects lazily
    assert isinstance(limiter, RedisLimiter)
    await limiter.close()
