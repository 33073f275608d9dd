"""Account services on SQLite and PostgreSQL: money and periods, accounts and members, plans,
subscriptions, credit, redeem codes (including concurrent redemption), payments.

Account keys, prices and usage queries are in tests/test_accounts_metering.py; the admission
policy's quota seed in tests/test_policy.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import accounts, codes, credit, plans, subscriptions
from claudestore.accounts.fields import Conflict
from claudestore.accounts.money import add_period, format_usd, usd_to_nanos
from claudestore.accounts.payments import CreditsOnlyProvider
from claudestore.core.errors import InvalidRequest, NotFound, PaymentRequired, PermissionDenied
from claudestore.storage.billing_models import Account, CreditEntry, RedeemCode, Subscription
from claudestore.storage.db import Database
from tests.support.accounts import USD, entries, load_account, new_account, tx

pytest_plugins = ["tests.support.accounts_db"]  # the db and db_url fixtures, one database per backend


# -- money and periods -----------------------------------------------------------------------


def test_money_and_periods() -> None:
    assert usd_to_nanos("12.50") == 12_500_000_000
    assert usd_to_nanos(0.1) == 100_000_000
    assert format_usd(12_500_000_000) == "12.50"
    assert format_usd(3_000) == "0.000003"
    assert format_usd(-5 * USD) == "-5.00"
    with pytest.raises(InvalidRequest, match="decimal places"):
        usd_to_nanos("0.0000000001")
    with pytest.raises(InvalidRequest, match="between"):
        usd_to_nanos(-1)
    start = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert add_period(start, "month") == datetime(2026, 2, 28, 9, 30, tzinfo=UTC)
    assert add_period(start, "month", 13) == datetime(2027, 2, 28, 9, 30, tzinfo=UTC)
    assert add_period(datetime(2028, 2, 29, tzinfo=UTC), "year") == datetime(2029, 2, 28, tzinfo=UTC)
    assert add_period(start, "week") == start + timedelta(days=7)
    assert add_period(datetime(2026, 12, 15, tzinfo=UTC), "month") == datetime(2027, 1, 15, tzinfo=UTC)


# -- accounts and members --------------------------------------------------------------------


async def test_accounts_and_members(db: Database) -> None:
    account_id = await new_account(db, "Acme", kind="organisation", email="Billing@Acme.test")
    account = await load_account(db, account_id)
    assert (account.kind, account.email, account.balance_nanos) == ("organisation", "billing@acme.test", 0)

    with pytest.raises(InvalidRequest, match="kind: must be one of") as err:
        await tx(db, lambda s: accounts.create_account(s, {"name": "x", "kind": "robot"}))
    assert err.value.param == "kind"
    with pytest.raises(InvalidRequest, match="name: expected a string, got int"):
        await tx(db, lambda s: accounts.create_account(s, {"name": 5}))
    with pytest.raises(InvalidRequest, match="unknown field 'nmae'"):
        await tx(db, lambda s: accounts.create_account(s, {"nmae": "typo"}))

    updated = await tx(db, lambda s: accounts.update_account(s, account_id, {"name": "Acme Ltd"}))
    assert updated.name == "Acme Ltd"
    disabled = await tx(db, lambda s: accounts.set_disabled(s, account_id, True))
    assert disabled.disabled_at is not None
    other = await new_account(db, "other")
    async with db.session() as s:
        assert [a.id for a in await accounts.list_accounts(s, include_disabled=False)] == [other]
        assert len(await accounts.list_accounts(s)) == 2
    await tx(db, lambda s: accounts.set_disabled(s, account_id, False))

    member, created = await tx(
        db, lambda s: accounts.add_member(s, account_id, {"email": "Ann@acme.test", "role": "owner"})
    )
    assert created and member.user.email == "ann@acme.test" and member.membership.role == "owner"
    again, created = await tx(
        db, lambda s: accounts.add_member(s, account_id, {"email": "ann@acme.test", "role": "admin"})
    )
    assert not created and again.membership.role == "admin"
    await tx(db, lambda s: accounts.add_member(s, other, {"email": "ann@acme.test"}))  # same user, 2 accounts
    await tx(db, lambda s: accounts.add_member(s, account_id, {"email": "bob@acme.test"}))
    async with db.session() as s:
        assert [m.user.email for m in await accounts.list_members(s, account_id)] == [
            "ann@acme.test",
            "bob@acme.test",
        ]
    await tx(db, lambda s: accounts.remove_member(s, account_id, "ann@acme.test"))
    with pytest.raises(NotFound, match="not a member"):
        await tx(db, lambda s: accounts.remove_member(s, account_id, "ann@acme.test"))
    with pytest.raises(InvalidRequest, match="not an email"):
        await tx(db, lambda s: accounts.add_member(s, account_id, {"email": "nobody"}))
    async with db.session() as s:
        assert [m.user.email for m in await accounts.list_members(s, other)] == ["ann@acme.test"]

    # An account holding money needs force; an empty one is deleted outright.
    await tx(db, lambda s: credit.top_up(s, account_id, 5 * USD, "invoice 1"))
    with pytest.raises(Conflict, match=r"balance of \$5.00"):
        await tx(db, lambda s: accounts.delete_account(s, account_id))
    await tx(db, lambda s: accounts.delete_account(s, account_id, force=True))
    await tx(db, lambda s: accounts.delete_account(s, other))
    with pytest.raises(NotFound):
        await tx(db, lambda s: accounts.get_account(s, account_id))
    assert await entries(db, account_id) == []  # cascaded


async def test_count_accounts(db: Database) -> None:
    async with db.session() as s:
        assert await accounts.count_accounts(s) == accounts.AccountCounts(total=0, disabled=0)
    ids = [await new_account(db, f"account {n}") for n in range(3)]
    await tx(db, lambda s: accounts.set_disabled(s, ids[1], True))
    async with db.session() as s:
        assert await accounts.count_accounts(s) == accounts.AccountCounts(total=3, disabled=1)
    await tx(db, lambda s: accounts.set_disabled(s, ids[1], False))
    await tx(db, lambda s: accounts.delete_account(s, ids[2]))
    async with db.session() as s:
        assert await accounts.count_accounts(s) == accounts.AccountCounts(total=2, disabled=0)


# -- plans -----------------------------------------------------------------------------------


async def test_plans_crud_validation_and_archive(db: Database) -> None:
    pro = await tx(
        db,
        lambda s: plans.create_plan(
            s,
            {
                "name": "pro",
                "price_usd": "20",
                "rpm": 60,
                "tpm": 100_000,
                "max_concurrency": 5,
                "quota_tokens": 1_000_000,
                "allowed_models": ["claude-*", "claude-*"],
                "included_credit_usd": 5,
                "trial": False,
            },
        ),
    )
    assert pro.allowed_models == ["claude-*"] and pro.included_credit_nanos == 5 * USD
    assert (pro.period, pro.price_usd, pro.public) == ("month", Decimal("20"), True)

    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": "x", "allowed_models": "claude-*"}, "allowed_models"),
        ({"name": "x", "allowed_models": ["ok", 3]}, "allowed_models"),
        ({"name": "x", "allowed_models": []}, "allowed_models"),
        ({"name": "x", "rpm": "60"}, "rpm"),
        ({"name": "x", "rpm": 0}, "rpm"),
        ({"name": "x", "tpm": True}, "tpm"),
        ({"name": "x", "period": "fortnight"}, "period"),
        ({"name": "x", "price_usd": "cheap"}, "price_usd"),
        ({"name": "x", "price_usd": "1.005"}, "price_usd"),
        ({"name": "x", "price_multiplier": 0}, "price_multiplier"),
        ({"name": "x", "trial": "yes"}, "trial"),
        ({"price_usd": 1}, "name"),
    ]
    for body, field in bad:
        with pytest.raises(InvalidRequest) as err:
            await tx(db, lambda s, body=body: plans.create_plan(s, body))
        assert err.value.param == field, (body, err.value.message)
        assert field in err.value.message
    with pytest.raises(Conflict, match="already exists"):
        await tx(db, lambda s: plans.create_plan(s, {"name": "pro"}))

    updated = await tx(db, lambda s: plans.update_plan(s, "pro", {"rpm": None, "description": "Pro"}))
    assert updated.rpm is None and updated.description == "Pro"

    free = await tx(db, lambda s: plans.create_plan(s, {"name": "free"}))
    with pytest.raises(Conflict, match="'pro' already exists"):
        await tx(db, lambda s: plans.update_plan(s, free.id, {"name": "pro"}))
    _, action = await tx(db, lambda s: plans.delete_plan(s, free.id))
    assert action == "deleted"

    account_id = await new_account(db)
    await tx(db, lambda s: subscriptions.subscribe(s, account_id, "pro"))
    archived, action = await tx(db, lambda s: plans.delete_plan(s, pro.id))
    assert action == "archived" and archived.archived_at is not None
    async with db.session() as s:
        assert await plans.list_plans(s) == []
        assert [p.name for p in await plans.list_plans(s, include_archived=True)] == ["pro"]
    with pytest.raises(InvalidRequest, match="archived"):
        await tx(db, lambda s: subscriptions.subscribe(s, account_id, pro.id))
    restored = await tx(db, lambda s: plans.update_plan(s, pro.id, {"archived": False}))
    assert restored.archived_at is None


# -- subscriptions and credit ----------------------------------------------------------------


async def test_subscribe_grants_credit_and_replaces(db: Database) -> None:
    account_id = await new_account(db)
    starter = await tx(
        db,
        lambda s: plans.create_plan(s, {"name": "starter", "included_credit_usd": "2.5", "period": "week"}),
    )
    monthly = await tx(db, lambda s: plans.create_plan(s, {"name": "monthly"}))

    now = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    first = await tx(db, lambda s: subscriptions.subscribe(s, account_id, starter.id, now=now))
    assert first.grant is not None and first.grant.amount_nanos == 2_500_000_000
    assert first.grant.kind == "grant" and first.grant.reference == f"subscription:{first.subscription.id}"
    assert first.subscription.period_end == now + timedelta(weeks=1)
    assert (await load_account(db, account_id)).balance_nanos == 2_500_000_000

    second = await tx(db, lambda s: subscriptions.subscribe(s, account_id, "monthly", now=now))
    assert second.grant is None and second.replaced == 1
    assert second.subscription.period_end == datetime(2026, 4, 30, 12, 0, tzinfo=UTC)
    async with db.session() as s:
        rows = list(await s.scalars(select(Subscription).where(Subscription.account_id == account_id)))
        assert sorted(r.status for r in rows) == ["active", "cancelled"]
        current = await subscriptions.active(s, account_id)
        assert current is not None and current[1].id == monthly.id

    cancelled = await tx(db, lambda s: subscriptions.cancel(s, account_id))
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    with pytest.raises(NotFound, match="no active subscription"):
        await tx(db, lambda s: subscriptions.cancel(s, account_id))
    with pytest.raises(NotFound, match="No plan"):
        await tx(db, lambda s: subscriptions.subscribe(s, account_id, "nope"))
    with pytest.raises(NotFound, match="No account"):
        await tx(db, lambda s: subscriptions.subscribe(s, 999, "monthly"))


async def test_active_for_many_accounts_in_one_query(db: Database) -> None:
    async with db.session() as s:
        assert await subscriptions.active_for(s, []) == {}
        assert await subscriptions.count_active(s) == 0
    basic = await tx(db, lambda s: plans.create_plan(s, {"name": "basic"}))
    pro = await tx(db, lambda s: plans.create_plan(s, {"name": "pro"}))
    switched, cancelled, lapsed, doubled, never = [
        await new_account(db, name) for name in ("switched", "cancelled", "lapsed", "doubled", "never")
    ]
    await tx(db, lambda s: subscriptions.subscribe(s, switched, basic.id))
    await tx(db, lambda s: subscriptions.subscribe(s, switched, pro.id))  # cancels basic
    await tx(db, lambda s: subscriptions.subscribe(s, cancelled, basic.id))
    await tx(db, lambda s: subscriptions.cancel(s, cancelled))
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    # Its period ended long ago but its status is still active: like active(), active_for reports it.
    await tx(db, lambda s: subscriptions.subscribe(s, lapsed, basic.id, now=long_ago))

    async def two_active(s: AsyncSession) -> None:  # the services never leave two; the newest wins
        for plan in (basic, pro):
            end = add_period(long_ago, "year")
            s.add(Subscription(account_id=doubled, plan_id=plan.id, period_start=long_ago, period_end=end))
        await s.flush()

    await tx(db, two_active)

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    wanted = [switched, cancelled, lapsed, doubled, never, 999_999, switched]
    async with db.session() as s:
        one_by_one = {i: current for i in wanted if (current := await subscriptions.active(s, i)) is not None}
        event.listen(db.engine.sync_engine, "before_cursor_execute", record)
        try:
            found = await subscriptions.active_for(s, wanted)
            assert len(statements) == 1
            statements.clear()
            batches = await subscriptions.active_for(
                s, [*wanted, *range(10**9, 10**9 + subscriptions.ACTIVE_FOR_BATCH)]
            )
            assert len(statements) == 2  # one query per batch of ids
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        assert {i: (sub.id, plan.id) for i, (sub, plan) in found.items()} == {
            i: (sub.id, plan.id) for i, (sub, plan) in one_by_one.items()
        }
        assert {i: plan.name for i, (_, plan) in found.items()} == {
            switched: "pro",
            lapsed: "basic",
            doubled: "pro",
        }
        assert all(sub.account_id == i and sub.status == "active" for i, (sub, _) in found.items())
        assert batches.keys() == found.keys()
        assert await subscriptions.count_active(s) == 3  # doubled once; cancelled and never not at all


async def test_top_up_and_adjust(db: Database) -> None:
    account_id = await new_account(db)
    entry_id = await tx(db, lambda s: credit.top_up(s, account_id, 10 * USD, "invoice 42"))
    assert isinstance(entry_id, int)
    second = await tx(db, lambda s: credit.top_up(s, account_id, 1, None))
    adjustment = await tx(db, lambda s: credit.adjust(s, account_id, -3 * USD, "refund"))
    assert (await load_account(db, account_id)).balance_nanos == 7 * USD + 1
    rows = await entries(db, account_id)
    assert [(e.id, e.kind, e.amount_nanos, e.reference) for e in rows] == [
        (entry_id, "topup", 10 * USD, "invoice 42"),
        (second, "topup", 1, None),
        (adjustment, "adjustment", -3 * USD, "refund"),
    ]
    for bad in (0, -5, True):
        with pytest.raises(InvalidRequest, match="positive"):
            await tx(db, lambda s, bad=bad: credit.top_up(s, account_id, bad))
    with pytest.raises(NotFound):
        await tx(db, lambda s: credit.top_up(s, 999, USD))
    async with db.session() as s:
        assert [e.id for e in await credit.history(s, account_id, limit=2)] == [adjustment, second]
        assert [e.id for e in await credit.history(s, account_id, limit=5, before_id=second)] == [entry_id]
        assert await s.scalar(select(func.count()).select_from(CreditEntry)) == 3


# -- redeem codes ----------------------------------------------------------------------------


async def test_redeem_codes(db: Database) -> None:
    plan = await tx(
        db, lambda s: plans.create_plan(s, {"name": "trial", "trial": True, "included_credit_usd": 1})
    )
    made = await tx(db, lambda s: codes.create_codes(s, {"count": 3, "credit_usd": "10", "plan": "trial"}))
    assert len(made) == 3 and len({raw for raw, _ in made}) == 3
    raw, row = made[0]
    assert raw.startswith("CS-") and len(raw) == 27 and row.prefix == raw[:7]
    async with db.session() as s:
        stored = list(await s.scalars(select(RedeemCode.code_hash)))
        assert raw not in stored and all(len(h) == 64 for h in stored)

    account_id = await new_account(db)
    typed = "  " + raw.lower().replace("-", " ") + " "  # forgiving input
    result = await tx(db, lambda s: codes.redeem(s, account_id, typed))
    assert result.entry.kind == "redeem" and result.entry.amount_nanos == 10 * USD
    assert result.subscribed is not None and result.subscribed.plan.id == plan.id
    assert [e.amount_nanos for e in result.credit_entries] == [10 * USD, USD]
    assert result.code.uses == 1
    assert (await load_account(db, account_id)).balance_nanos == 11 * USD

    with pytest.raises(Conflict, match="already been used"):
        await tx(db, lambda s: codes.redeem(s, account_id, raw))
    with pytest.raises(NotFound, match="No such redeem code"):
        await tx(db, lambda s: codes.redeem(s, account_id, "CS-AAAA-AAAA-AAAA-AAAA-AAAA"))
    with pytest.raises(NotFound, match="No such redeem code"):
        await tx(db, lambda s: codes.redeem(s, account_id, "hello"))

    # A multi-use code: once per account.
    ((multi, _),) = await tx(db, lambda s: codes.create_codes(s, {"credit_nanos": 500, "max_uses": 5}))
    other = await new_account(db, "other")
    await tx(db, lambda s: codes.redeem(s, account_id, multi))
    await tx(db, lambda s: codes.redeem(s, other, multi))
    with pytest.raises(Conflict, match="already redeemed"):
        await tx(db, lambda s: codes.redeem(s, other, multi))
    async with db.session() as s:
        uses = await s.scalar(select(RedeemCode.uses).where(RedeemCode.credit_nanos == 500))
        assert uses == 2  # the refused attempt rolled back its claim

    # Plan-only codes, expiry, validation.
    ((plan_only, _),) = await tx(db, lambda s: codes.create_codes(s, {"plan": plan.id}))
    result = await tx(db, lambda s: codes.redeem(s, other, plan_only))
    assert result.entry.amount_nanos == 0 and [e.kind for e in result.credit_entries] == ["grant"]
    ((expiring, _),) = await tx(db, lambda s: codes.create_codes(s, {"credit_usd": 1, "expires_in_days": 1}))
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(InvalidRequest, match="expired"):
        await tx(db, lambda s: codes.redeem(s, other, expiring, now=later))
    with pytest.raises(InvalidRequest, match=r"credit .* or a plan"):
        await tx(db, lambda s: codes.create_codes(s, {"count": 1}))
    with pytest.raises(InvalidRequest) as err:
        await tx(db, lambda s: codes.create_codes(s, {"credit_usd": 1, "count": 5000}))
    assert err.value.param == "count"
    await tx(db, lambda s: accounts.set_disabled(s, other, True))
    with pytest.raises(PermissionDenied, match="disabled"):
        await tx(db, lambda s: codes.redeem(s, other, expiring))


async def test_concurrent_redeem_single_use(db: Database) -> None:
    """20 accounts race for a max_uses=1 code: exactly one wins, once."""
    ((raw, code), *_) = await tx(db, lambda s: codes.create_codes(s, {"credit_usd": 5}))
    account_ids = [await new_account(db, f"racer {i}") for i in range(20)]

    async def attempt(account_id: int) -> bool:
        try:
            await tx(db, lambda s: codes.redeem(s, account_id, raw))
        except Conflict:
            return False
        return True

    results = await asyncio.gather(*(attempt(a) for a in account_ids))
    assert sum(results) == 1
    winner = account_ids[results.index(True)]
    async with db.session() as s:
        assert await s.scalar(select(RedeemCode.uses).where(RedeemCode.id == code.id)) == 1
        rows = list(await s.scalars(select(CreditEntry).where(CreditEntry.kind == "redeem")))
        assert [(e.account_id, e.amount_nanos) for e in rows] == [(winner, 5 * USD)]
        balances = dict((await s.execute(select(Account.id, Account.balance_nanos))).all())
    assert balances.pop(winner) == 5 * USD and set(balances.values()) == {0}


# -- payments --------------------------------------------------------------------------------


async def test_credits_only_provider(db: Database) -> None:
    provider = CreditsOnlyProvider()
    account_id = await new_account(db)
    plan = await tx(
        db, lambda s: plans.create_plan(s, {"name": "pro", "price_usd": 20, "included_credit_usd": 1})
    )
    with pytest.raises(PaymentRequired, match=r"costs \$20.00 per month; the balance is \$0.00"):
        await tx(db, lambda s: provider.create_checkout(s, account_id, plan.id))
    await tx(db, lambda s: credit.top_up(s, account_id, 25 * USD))
    checkout = await tx(db, lambda s: provider.create_checkout(s, account_id, plan.id))
    assert checkout.status == "paid" and checkout.amount_nanos == 20 * USD
    assert [(e.kind, e.amount_nanos) for e in checkout.credit_entries] == [
        ("purchase", -20 * USD),
        ("grant", USD),
    ]
    assert (await load_account(db, account_id)).balance_nanos == 6 * USD
    async with db.session() as s:
        current = await subscriptions.active(s, account_id)
        assert current is not None and current[0].id == checkout.subscription_id
        with pytest.raises(InvalidRequest, match="no webhooks"):
            await provider.handle_webhook(s, {}, b"{}")
