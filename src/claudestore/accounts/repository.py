"""Data access for the account services: statements only, no business rules.

Everything here takes an ``AsyncSession`` and never commits. Balance changes are
single ``UPDATE ... SET balance_nanos = balance_nanos + :delta`` statements, so they
compose with concurrent writers (the gateway's ledger, other top-ups) on both
backends without read-modify-write races.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.storage.billing_models import (
    Account,
    CreditEntry,
    Membership,
    Plan,
    RedeemCode,
    Subscription,
    User,
)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


async def count_accounts(session: AsyncSession) -> tuple[int, int]:
    """How many accounts there are and how many of them are disabled, in one statement."""
    total, disabled = (
        await session.execute(select(func.count(), func.count(Account.disabled_at)).select_from(Account))
    ).one()
    return int(total), int(disabled)


async def lock_account(session: AsyncSession, account_id: int) -> Account | None:
    """The account, freshly read, with its row write-locked until the transaction ends.

    A no-op UPDATE takes the lock on both backends: a row lock on PostgreSQL, the
    database write lock on SQLite (where ``SELECT ... FOR UPDATE`` does not exist).
    Used to serialise per-account changes such as subscribing.
    """
    result = await session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(balance_nanos=Account.balance_nanos)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) == 0:
        return None
    statement = select(Account).where(Account.id == account_id).execution_options(populate_existing=True)
    return await session.scalar(statement)


async def add_balance(
    session: AsyncSession, account_id: int, delta: int, *, bound: int | None = None
) -> bool:
    """Atomically add ``delta`` nano-dollars to the balance; False if there is no such account,
    or if the new balance would leave ``[-bound, bound]`` (compared without overflowing)."""
    statement = update(Account).where(Account.id == account_id)
    if bound is not None:
        statement = statement.where(Account.balance_nanos.between(-bound - delta, bound - delta))
    result = await session.execute(
        statement.values(balance_nanos=Account.balance_nanos + delta).execution_options(
            synchronize_session=False
        )
    )
    return _rowcount(result) == 1


async def balance(session: AsyncSession, account_id: int) -> int | None:
    return await session.scalar(select(Account.balance_nanos).where(Account.id == account_id))


async def insert_credit_entry(
    session: AsyncSession, account_id: int, amount_nanos: int, kind: str, reference: str | None
) -> CreditEntry:
    entry = CreditEntry(account_id=account_id, amount_nanos=amount_nanos, kind=kind, reference=reference)
    session.add(entry)
    await session.flush()
    return entry


async def credit_entries(
    session: AsyncSession, account_id: int, *, limit: int, before_id: int | None = None
) -> list[CreditEntry]:
    statement = select(CreditEntry).where(CreditEntry.account_id == account_id)
    if before_id is not None:
        statement = statement.where(CreditEntry.id < before_id)
    return list(await session.scalars(statement.order_by(CreditEntry.id.desc()).limit(limit)))


async def count_credit_entries(session: AsyncSession, account_id: int) -> int:
    count = await session.scalar(select(func.count()).where(CreditEntry.account_id == account_id))
    return int(count or 0)


async def has_credit_entry(session: AsyncSession, account_id: int, kind: str, reference: str) -> bool:
    found = await session.scalar(
        select(CreditEntry.id)
        .where(
            CreditEntry.account_id == account_id, CreditEntry.kind == kind, CreditEntry.reference == reference
        )
        .limit(1)
    )
    return found is not None


async def active_subscription(session: AsyncSession, account_id: int) -> Subscription | None:
    """The account's subscription with status ``active`` (at most one; the newest if several)."""
    statement = (
        select(Subscription)
        .where(Subscription.account_id == account_id, Subscription.status == "active")
        .order_by(Subscription.id.desc())
        .limit(1)
    )
    return await session.scalar(statement)


async def active_subscriptions(
    session: AsyncSession, account_ids: Collection[int]
) -> list[tuple[Subscription, Plan]]:
    """:func:`active_subscription` for many accounts in one statement, each with its plan.

    Per account the newest subscription with status ``active``; accounts without one are
    not in the result. One ``IN`` parameter per id, so callers pass a bounded batch.
    """
    newest = (
        select(func.max(Subscription.id))
        .where(Subscription.account_id.in_(account_ids), Subscription.status == "active")
        .group_by(Subscription.account_id)
    )
    rows = await session.execute(
        select(Subscription, Plan)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.id.in_(newest))
    )
    return [(sub, plan) for sub, plan in rows.all()]


async def count_active_subscriptions(session: AsyncSession) -> int:
    """Accounts with a subscription whose status is ``active`` (each counted once)."""
    count = await session.scalar(
        select(func.count(func.distinct(Subscription.account_id))).where(Subscription.status == "active")
    )
    return int(count or 0)


async def cancel_active_subscriptions(session: AsyncSession, account_id: int, now: datetime) -> int:
    result = await session.execute(
        update(Subscription)
        .where(Subscription.account_id == account_id, Subscription.status == "active")
        .values(status="cancelled", cancelled_at=now, renews=False)
        .execution_options(synchronize_session="fetch")
    )
    return _rowcount(result)


async def subscriptions(session: AsyncSession, account_id: int) -> list[tuple[Subscription, Plan]]:
    rows = await session.execute(
        select(Subscription, Plan)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.account_id == account_id)
        .order_by(Subscription.id.desc())
    )
    return [(sub, plan) for sub, plan in rows.all()]


async def plan_references(session: AsyncSession, plan_id: int) -> int:
    """Subscriptions and redeem codes that point at a plan (they block deleting it)."""
    subs = await session.scalar(select(func.count()).where(Subscription.plan_id == plan_id))
    codes = await session.scalar(select(func.count()).where(RedeemCode.plan_id == plan_id))
    return int(subs or 0) + int(codes or 0)


async def plan_by_name(session: AsyncSession, name: str) -> Plan | None:
    return await session.scalar(select(Plan).where(Plan.name == name))


async def user_by_email(session: AsyncSession, address: str) -> User | None:
    return await session.scalar(select(User).where(User.email == address))


async def membership(session: AsyncSession, account_id: int, user_id: int) -> Membership | None:
    return await session.scalar(
        select(Membership).where(Membership.account_id == account_id, Membership.user_id == user_id)
    )


async def members(session: AsyncSession, account_id: int) -> list[tuple[Membership, User]]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id == account_id)
        .order_by(Membership.id)
    )
    return [(m, u) for m, u in rows.all()]


async def code_by_hash(session: AsyncSession, code_hash: str) -> RedeemCode | None:
    return await session.scalar(select(RedeemCode).where(RedeemCode.code_hash == code_hash))


async def claim_code_use(session: AsyncSession, code_id: int, now: datetime) -> bool:
    """Count one use of a code if it still has one left and has not expired.

    One conditional UPDATE: on PostgreSQL a concurrent redeemer blocks on the row lock
    and re-checks ``uses < max_uses`` against the committed value; on SQLite writers
    are serialised. Either way no more than ``max_uses`` claims can ever commit.
    """
    result = await session.execute(
        update(RedeemCode)
        .where(
            RedeemCode.id == code_id,
            RedeemCode.uses < RedeemCode.max_uses,
            (RedeemCode.expires_at.is_(None)) | (RedeemCode.expires_at > now),
        )
        .values(uses=RedeemCode.uses + 1)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1
