"""Subscriptions: an account on a plan for one period at a time.

An account has at most one ``active`` subscription; subscribing again cancels the
current one and starts a new period now (no proration). The period ends one plan
period later in calendar terms (see ``money.add_period``). When the plan includes
credit, subscribing writes a ``grant`` credit entry and raises the balance in the
same transaction. Subscribing here does not charge the plan's price: operators
subscribe by hand, and ``payments`` charges before subscribing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import credit, repository
from claudestore.accounts.money import add_period
from claudestore.accounts.plans import get_plan
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.billing_models import Account, CreditEntry, Plan, Subscription
from claudestore.storage.models import utcnow

#: :func:`active_for` asks about at most this many accounts per query (one bind parameter each).
ACTIVE_FOR_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Subscribed:
    subscription: Subscription
    plan: Plan
    grant: CreditEntry | None  # the included credit, when the plan has some
    replaced: int  # how many active subscriptions were cancelled


async def subscribe(
    session: AsyncSession, account_id: int, plan_ident: int | str, *, now: datetime | None = None
) -> Subscribed:
    """Put the account on the plan from now on, replacing its active subscription."""
    now = now or utcnow()
    account = await repository.lock_account(session, account_id)  # serialises subscribes per account
    if account is None:
        raise NotFound(f"No account with id {account_id}.")
    if account.disabled_at is not None:
        raise InvalidRequest(f"Account {account_id} is disabled; enable it before subscribing it to a plan.")
    plan = await get_plan(session, plan_ident)
    if plan.archived_at is not None:
        raise InvalidRequest(
            f"Plan {plan.name!r} is archived and takes no new subscriptions; choose another plan "
            "or restore it (archived: false)."
        )
    replaced = await repository.cancel_active_subscriptions(session, account_id, now)
    sub = Subscription(
        account_id=account_id,
        plan_id=plan.id,
        period_start=now,
        period_end=add_period(now, plan.period),
        renews=True,
        status="active",
    )
    session.add(sub)
    await session.flush()
    grant = None
    if plan.included_credit_nanos > 0:
        grant = await credit.add_credit(
            session, account_id, plan.included_credit_nanos, "grant", f"subscription:{sub.id}"
        )
    return Subscribed(sub, plan, grant, replaced)


async def cancel(session: AsyncSession, account_id: int, *, now: datetime | None = None) -> Subscription:
    """End the account's active subscription now; its keys stop working (no plan)."""
    if await session.get(Account, account_id) is None:
        raise NotFound(f"No account with id {account_id}.")
    current = await repository.active_subscription(session, account_id)
    if current is None:
        raise NotFound(f"Account {account_id} has no active subscription.")
    current.status = "cancelled"
    current.cancelled_at = now or utcnow()
    current.renews = False
    await session.flush()
    return current


async def active(session: AsyncSession, account_id: int) -> tuple[Subscription, Plan] | None:
    """The active subscription and its plan, if any."""
    current = await repository.active_subscription(session, account_id)
    if current is None:
        return None
    plan = await session.get(Plan, current.plan_id)
    assert plan is not None  # foreign key
    return current, plan


async def active_for(
    session: AsyncSession, account_ids: Iterable[int]
) -> dict[int, tuple[Subscription, Plan]]:
    """:func:`active` for many accounts at once: account id → (subscription, plan).

    Accounts without an active subscription (or that do not exist) are left out. One
    query for up to :data:`ACTIVE_FOR_BATCH` accounts (a page of a list), not one each.
    """
    wanted = sorted(set(account_ids))
    found: dict[int, tuple[Subscription, Plan]] = {}
    for start in range(0, len(wanted), ACTIVE_FOR_BATCH):
        for sub, plan in await repository.active_subscriptions(
            session, wanted[start : start + ACTIVE_FOR_BATCH]
        ):
            found[sub.account_id] = (sub, plan)
    return found


async def count_active(session: AsyncSession) -> int:
    """How many accounts have an active subscription (what :func:`active` finds)."""
    return await repository.count_active_subscriptions(session)


async def history(session: AsyncSession, account_id: int) -> list[tuple[Subscription, Plan]]:
    """Every subscription of the account, newest first."""
    return await repository.subscriptions(session, account_id)
