"""Credit reaches the live balance counter exactly once, whatever the order of events.

A top-up is a ``credit_entries`` row and a move of ``accounts.balance_nanos`` in one
transaction; the limiter's counter hears of it through ``credit()`` (the admin API's hook,
the poller). Two races are covered here, on SQLite and PostgreSQL, memory and Redis:

* the policy's balance seed was read before the top-up committed and the counter was seeded
  after the credit was delivered: the seed names the newest credit it includes
  (``balance_credit_id``), so the limiter adds the credit it kept;
* two top-ups commit in the other order than their ids (PostgreSQL): the poller has read
  past the lower id when it commits, and still delivers it (a hole looked up again).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert

from claudestore.accounts import credit, keys, plans, subscriptions
from claudestore.admission.credits import CreditPoller
from claudestore.admission.policy import Policy, load_policy
from claudestore.core.errors import PaymentRequired
from claudestore.limits.base import Admission
from claudestore.limits.memory import MemoryLimiter
from claudestore.storage.billing_models import CreditEntry
from claudestore.storage.db import Database
from tests.support.accounts import USD, entries, new_account, tx
from tests.support.redis import LimiterFactory, limiter_factory

__all__ = ["limiter_factory"]  # a fixture, imported explicitly
pytest_plugins = ["tests.support.accounts_db"]  # the db fixture, one database per backend


async def customer(db: Database, name: str = "acme") -> tuple[int, int]:
    """An account on a plan (no included credit) and its key: (account id, key id)."""
    account_id = await new_account(db, name)
    if not await plans_exist(db):
        await tx(db, lambda s: plans.create_plan(s, {"name": "payg", "rpm": 1000}))
    await tx(db, lambda s: subscriptions.subscribe(s, account_id, "payg"))
    _raw, key = await tx(db, lambda s: keys.create_account_key(s, account_id, {"name": "k"}))
    return account_id, key.id


async def plans_exist(db: Database) -> bool:
    async with db.session() as s:
        return bool(await plans.list_plans(s))


def admission(policy: Policy, cost: int) -> Admission:
    return Admission(
        scopes=policy.scopes,
        tokens=10,
        account_id=policy.account_id,
        cost_nanos=cost,
        balance_seed=policy.balance_seed,
        quota=policy.quota,
        balance_credit_id=policy.balance_credit_id,
    )


async def test_the_policy_names_the_newest_credit_its_balance_includes(db: Database) -> None:
    account_id, key_id = await customer(db)
    other_id, _ = await customer(db, "other")
    policy = await load_policy(db, key_id)
    assert (policy.balance_seed, policy.balance_credit_id) == (0, 0)
    first = await tx(db, lambda s: credit.top_up(s, account_id, 3 * USD))
    second = await tx(db, lambda s: credit.top_up(s, account_id, 2 * USD))
    await tx(db, lambda s: credit.top_up(s, other_id, 7 * USD))  # another account's: not this seed's
    policy = await load_policy(db, key_id)
    assert first < second
    assert (policy.balance_seed, policy.balance_credit_id) == (5 * USD, second)


async def test_a_top_up_between_the_seed_and_its_use_is_not_lost(
    db: Database, limiter_factory: LimiterFactory
) -> None:
    """The customer's first request is refused for want of credit; the operator tops up from the
    CLI (another process: the poller delivers it); the customer's next request, within the
    policy's TTL, still carries the seed read before the top-up."""
    limiter = limiter_factory()
    account_id, key_id = await customer(db)
    stale = await load_policy(db, key_id)  # cached by the gateway for its TTL
    with pytest.raises(PaymentRequired):
        await limiter.acquire(admission(stale, cost=USD))
    await tx(db, lambda s: credit.top_up(s, account_id, 10 * USD))
    assert await CreditPoller(db, limiter).poll() == 1  # no counter yet: kept for the seed
    await limiter.acquire(admission(stale, cost=USD))
    assert await limiter.balance(account_id) == 9 * USD
    fresh = await load_policy(db, key_id)  # read after the top-up: includes it
    assert fresh.balance_seed == 10 * USD
    await limiter.acquire(admission(fresh, cost=USD))  # the counter exists: the seed is not used
    assert await limiter.balance(account_id) == 8 * USD
    assert await CreditPoller(db, limiter).poll() == 1  # another process's poller: applied once only
    assert await limiter.balance(account_id) == 8 * USD


async def test_a_top_up_in_the_seed_delivered_after_it_is_not_counted_twice(
    db: Database, limiter_factory: LimiterFactory
) -> None:
    """A CLI top-up commits; the gateway reads the policy and seeds the counter before its poller
    (every second) has delivered the entry."""
    limiter = limiter_factory()
    account_id, key_id = await customer(db)
    await tx(db, lambda s: credit.top_up(s, account_id, 10 * USD))
    policy = await load_policy(db, key_id)
    await limiter.acquire(admission(policy, cost=USD))
    assert await limiter.balance(account_id) == 9 * USD
    assert await CreditPoller(db, limiter).poll() == 1
    assert await limiter.balance(account_id) == 9 * USD  # the seed had it
    await tx(db, lambda s: credit.top_up(s, account_id, 5 * USD))
    assert await CreditPoller(db, limiter).poll() == 2  # a new poller reads both again
    assert await limiter.balance(account_id) == 14 * USD


async def test_the_poller_goes_back_for_an_id_it_skipped(db: Database) -> None:
    """Ids are taken at insert and committed in any order: the poller reads 1 and 3, then 2
    commits. An id that never appears (a rolled-back transaction) is given up after HOLE_TTL."""
    account_id, _ = await customer(db)
    limiter = MemoryLimiter()
    await limiter.acquire(Admission((), 0, account_id=account_id, balance_seed=0))  # a live counter
    poller = CreditPoller(db, limiter, hole_ttl=0.5)

    async def add(entry_id: int, nanos: int) -> None:
        values = {"id": entry_id, "account_id": account_id, "amount_nanos": nanos, "kind": "topup"}
        await tx(db, lambda s: s.execute(insert(CreditEntry).values(**values)))

    await add(101, 1 * USD)
    await add(104, 4 * USD)
    assert await poller.poll() == 2
    assert await limiter.balance(account_id) == 5 * USD
    await add(103, 3 * USD)  # committed late
    assert await poller.poll() == 1
    assert await limiter.balance(account_id) == 8 * USD
    assert await poller.poll() == 0  # 102 may still come
    await asyncio.sleep(0.6)  # hole_ttl later
    assert await poller.poll() == 0
    assert poller._holes == {}  # 102 given up
    await add(105, 5 * USD)
    assert await poller.poll() == 1
    assert await limiter.balance(account_id) == 13 * USD


async def test_top_ups_that_commit_out_of_id_order_are_all_delivered(db: Database) -> None:
    """Two real transactions on PostgreSQL: the first top-up takes its id and waits, the second
    (another account) takes the next id and commits, the poller reads it, the first commits."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: its ids commit in order")
    first_account, _ = await customer(db, "first")
    second_account, _ = await customer(db, "second")
    limiter = MemoryLimiter()
    for account_id in (first_account, second_account):
        await limiter.acquire(Admission((), 0, account_id=account_id, balance_seed=0))
    poller = CreditPoller(db, limiter)
    async with db.session() as slow:
        slow_id = await credit.top_up(slow, first_account, 2 * USD)  # id taken, not committed
        fast_id = await tx(db, lambda s: credit.top_up(s, second_account, 3 * USD))
        assert fast_id > slow_id
        assert await poller.poll() == 1  # sees only the committed one
        await slow.commit()
    assert await poller.poll() == 1
    assert await limiter.balance(first_account) == 2 * USD
    assert await limiter.balance(second_account) == 3 * USD
    assert [e.id for e in await entries(db, first_account)] == [slow_id]
