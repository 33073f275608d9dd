"""The account services that metering rests on, on SQLite and PostgreSQL: model prices,
account keys (limits, allowed models, expiry, revocation, per-account isolation) and the
usage queries (summaries by day, model, key and account; recent rows; tokens since).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from claudestore.accounts import keys, prices, usage
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.db import Database
from claudestore.storage.keys import find_key
from tests.support.accounts import new_account, record, tx

pytest_plugins = ["tests.support.accounts_db"]  # the db and db_url fixtures, one database per backend


# -- prices ----------------------------------------------------------------------------------


async def test_prices(db: Database) -> None:
    row, created = await tx(db, lambda s: prices.set_price(s, "claude-*", {"input": 3, "output": "15"}))
    assert (
        created and row.cache_write_per_mtok == Decimal("3.75") and row.cache_read_per_mtok == Decimal("0.3")
    )
    row, created = await tx(
        db,
        lambda s: prices.set_price(
            s, "claude-*", {"input": "2.5", "output": 10, "cache_write": "3.125", "cache_read": 0.25}
        ),
    )
    assert not created and row.input_per_mtok == Decimal("2.5") and row.cache_read_per_mtok == Decimal("0.25")
    await tx(db, lambda s: prices.set_price(s, "qwen3-32b", {"input": 0, "output": 0}))
    async with db.session() as s:
        listed = await prices.list_prices(s)
        assert [(p.model, p.input_per_mtok) for p in listed] == [
            ("claude-*", Decimal("2.5")),
            ("qwen3-32b", 0),
        ]
    for body, field in [
        ({"input": -1, "output": 1}, "input"),
        ({"input": 1}, "output"),
        ({"input": 1, "output": "1.0000001"}, "output"),
        ({"input": 1, "output": 1, "cache_read": [1]}, "cache_read"),
        ({"input": 1, "output": 1, "cache_reed": 1}, "cache_reed"),
    ]:
        with pytest.raises(InvalidRequest) as err:
            await tx(db, lambda s, body=body: prices.set_price(s, "m", body))
        assert err.value.param == field
    await tx(db, lambda s: prices.delete_price(s, "qwen3-32b"))
    with pytest.raises(NotFound):
        await tx(db, lambda s: prices.delete_price(s, "qwen3-32b"))


# -- account keys ----------------------------------------------------------------------------


async def test_account_keys(db: Database) -> None:
    account_id = await new_account(db)
    other = await new_account(db, "other")
    raw, key = await tx(
        db,
        lambda s: keys.create_account_key(
            s,
            account_id,
            {"name": "ci", "expires_in_days": 30, "allowed_models": ["claude-haiku-*"], "rpm_limit": 10},
        ),
    )
    assert key.account_id == account_id and key.rpm_limit == 10 and key.tpm_limit is None
    assert key.allowed_models == ["claude-haiku-*"] and key.expires_at is not None
    async with db.session() as s:
        found = await find_key(s, raw)
        assert found is not None and found.id == key.id and found.key_hash != raw

    with pytest.raises(InvalidRequest) as err:
        await tx(db, lambda s: keys.create_account_key(s, account_id, {"rpm_limit": "10"}))
    assert err.value.param == "rpm_limit"
    with pytest.raises(InvalidRequest, match="expires_at: must be in the future"):
        await tx(db, lambda s: keys.create_account_key(s, account_id, {"expires_at": "2001-01-01"}))
    with pytest.raises(NotFound):
        await tx(db, lambda s: keys.create_account_key(s, 999, {}))

    updated = await tx(
        db,
        lambda s: keys.update_key(s, key.id, {"name": "ci-2", "rpm_limit": None, "expires_at": None}),
    )
    assert (updated.name, updated.rpm_limit, updated.expires_at) == ("ci-2", None, None)
    # Another account's key is "not found", for reads and writes alike.
    with pytest.raises(NotFound):
        await tx(db, lambda s: keys.revoke_key(s, key.id, account_id=other))
    with pytest.raises(NotFound):
        await tx(db, lambda s: keys.update_key(s, key.id, {"name": "x"}, account_id=other))
    revoked = await tx(db, lambda s: keys.revoke_key(s, key.id, account_id=account_id))
    assert revoked.status() == "revoked"
    with pytest.raises(InvalidRequest, match="revoked"):
        await tx(db, lambda s: keys.update_key(s, key.id, {"name": "x"}))
    async with db.session() as s:
        assert [k.id for k in await keys.list_keys(s, account_id)] == [key.id]
        assert await keys.list_keys(s, other) == []


# -- usage -----------------------------------------------------------------------------------


async def test_usage_queries(db: Database) -> None:
    day1 = datetime(2026, 5, 1, 23, 59, 59, tzinfo=UTC)
    day2 = datetime(2026, 5, 2, 0, 0, 1, tzinfo=UTC)
    rows = [
        record(1, day1, account_id=1, key_id=11, model="claude-a"),
        record(2, day1, account_id=1, key_id=12, model="claude-b", cache_read_tokens=100),
        record(3, day2, account_id=1, key_id=11, model="claude-a", status=529, cost_nanos=0),
        record(4, day2, account_id=2, key_id=21, model="claude-a", cost_nanos=7),
    ]
    async with db.session() as s:
        s.add_all(rows)
        await s.commit()
    async with db.session() as s:
        (total,) = await usage.summarize(s, account_id=1)
        assert (total.requests, total.errors, total.input_tokens, total.cost_nanos) == (3, 1, 30, 2000)
        assert total.total_tokens == 145
        by_day = await usage.summarize(s, account_id=1, group_by="day")
        assert [(r.group, r.requests) for r in by_day] == [("2026-05-01", 2), ("2026-05-02", 1)]
        by_model = await usage.summarize(s, group_by="model")
        assert [(r.group, r.requests, r.cost_nanos) for r in by_model] == [
            ("claude-a", 3, 1007),
            ("claude-b", 1, 1000),
        ]
        by_key = await usage.summarize(s, account_id=1, group_by="key")
        assert [(r.group, r.requests) for r in by_key] == [(11, 2), (12, 1)]
        by_account = await usage.summarize(s, group_by="account", model="claude-a")
        assert [(r.group, r.requests) for r in by_account] == [(1, 2), (2, 1)]
        start, end = usage.time_range("2026-05-02", "2026-05-02")
        assert (start, end) == (datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 3, tzinfo=UTC))
        (day_two,) = await usage.summarize(s, start=start, end=end)
        assert day_two.requests == 2
        (none,) = await usage.summarize(s, account_id=99)
        assert (none.requests, none.cost_nanos) == (0, 0)
        with pytest.raises(InvalidRequest) as err:
            await usage.summarize(s, group_by="week")
        assert err.value.param == "group_by"
        with pytest.raises(InvalidRequest, match="to: must be after from"):
            usage.time_range("2026-05-03", "2026-05-01")

        page = await usage.recent(s, account_id=1, limit=2)
        assert [r.request_id for r in page] == ["req_0003", "req_0002"]
        rest = await usage.recent(s, account_id=1, limit=2, before_id=page[-1].id)
        assert [r.request_id for r in rest] == ["req_0001"]
        assert await usage.tokens_since(s, 1, day2) == 15
