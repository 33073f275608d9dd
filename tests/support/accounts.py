"""Helpers for the account-service tests: one committed unit of work (``tx``), a new account,
an account and its credit entries read back, and ledger rows (``record``) to add.

The ``db`` fixture they take comes from tests/support/accounts_db.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import accounts
from claudestore.storage.billing_models import Account, CreditEntry, UsageRecord
from claudestore.storage.db import Database

T = TypeVar("T")
USD = 1_000_000_000


async def tx(db: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """One committed unit of work, as an endpoint runs it."""
    async with db.session() as session:
        result = await work(session)
        await session.commit()
        return result


async def new_account(db: Database, name: str = "acme", **extra: Any) -> int:
    account = await tx(db, lambda s: accounts.create_account(s, {"name": name, **extra}))
    return account.id


async def load_account(db: Database, account_id: int) -> Account:
    async with db.session() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        return account


async def entries(db: Database, account_id: int) -> list[CreditEntry]:
    async with db.session() as session:
        return list(
            await session.scalars(
                select(CreditEntry).where(CreditEntry.account_id == account_id).order_by(CreditEntry.id)
            )
        )


def record(n: int, when: datetime, **values: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "request_id": f"req_{n:04d}",
        "created_at": when,
        "endpoint": "anthropic",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_nanos": 1000,
    }
    return UsageRecord(**{**base, **values})
