"""The admission policy loader (``PolicyCache`` / ``load_policy``) on SQLite and PostgreSQL:
the live quota seed, summed from the period's ledger rows only while the limiter has no live
counter for the quota.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from claudestore.accounts import keys, plans, subscriptions
from claudestore.storage.db import Database
from tests.support.accounts import new_account, record, tx

pytest_plugins = ["tests.support.accounts_db"]  # the db and db_url fixtures, one database per backend


# -- the policy's quota seed -------------------------------------------------------------------------


async def test_quota_seed_is_summed_only_without_a_live_counter(db: Database) -> None:
    """The quota's use in the period is a sum over the period's ledger rows, which grows with
    every request: the policy loader reads it only while the limiter has no live counter."""
    from claudestore.admission.policy import PolicyCache
    from claudestore.limits.base import Admission
    from claudestore.limits.memory import MemoryLimiter

    account_id = await new_account(db, "quota-co")
    await tx(db, lambda s: plans.create_plan(s, {"name": "quota-plan", "quota_tokens": 1_000_000}))
    await tx(db, lambda s: subscriptions.subscribe(s, account_id, "quota-plan"))
    _raw, key = await tx(db, lambda s: keys.create_account_key(s, account_id, {"name": "k"}))
    async with db.session() as s:
        s.add_all([record(n, datetime.now(UTC), account_id=account_id, key_id=key.id) for n in range(3)])
        await s.commit()

    sums: list[int] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def count_sums(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "sum(" in statement.lower() and "usage_records" in statement:
            sums.append(1)

    try:
        limiter = MemoryLimiter()
        cache = PolicyCache(db, ttl=0, live_quota=limiter.quota_used)
        first = await cache.get(key.id)
        assert first.quota is not None and first.quota.used_seed == 45 and len(sums) == 1
        admission = Admission((), tokens=100, account_id=account_id, quota=first.quota)
        await limiter.acquire(admission)  # the live counter now exists: 45 + 100
        again = await cache.get(key.id)  # ttl 0: reloaded, without the sum
        assert len(sums) == 1 and again.quota is not None and again.quota.name == first.quota.name
        assert await limiter.quota_used(first.quota.name) == 145
        fresh = PolicyCache(db, ttl=0, live_quota=MemoryLimiter().quota_used)  # e.g. after a restart
        assert (await fresh.get(key.id)).quota.used_seed == 45 and len(sums) == 2  # type: ignore[union-attr]
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count_sums)
