"""Check (and optionally repair) stored balances against the ledgers.

An account's balance must equal everything credited to it minus everything it was
charged::

    balance_nanos == SUM(credit_entries.amount_nanos) - SUM(usage_records.cost_nanos)

:func:`reconcile` computes the right-hand side for every account in **one** statement
(one ``GROUP BY`` per ledger table, joined to ``accounts``), so the comparison reads a
single consistent snapshot even while the ledger writer is charging. With ``fix=True``
each differing balance is set to its computed value with a compare-and-set
(``WHERE balance_nanos = <stored>``): an account charged in the meantime is left alone
and reported with ``fixed=False`` (run again). It takes a :class:`Database`, not a
session, and is its own transaction boundary (an admin operation).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update

from claudestore.storage.billing_models import Account, CreditEntry, UsageRecord
from claudestore.storage.db import Database


@dataclass(frozen=True, slots=True)
class BalanceDiff:
    account_id: int
    stored: int  # accounts.balance_nanos
    computed: int  # credits - usage
    difference: int  # stored - computed (positive: the account holds more than it should)
    fixed: bool = False


_credits = (
    select(CreditEntry.account_id, func.sum(CreditEntry.amount_nanos).label("total"))
    .group_by(CreditEntry.account_id)
    .subquery("credits")
)
_usage = (
    select(UsageRecord.account_id, func.sum(UsageRecord.cost_nanos).label("total"))
    .where(UsageRecord.account_id.is_not(None))
    .group_by(UsageRecord.account_id)
    .subquery("usage")
)
# One statement, so PostgreSQL (READ COMMITTED) and SQLite both read one snapshot.
_BALANCES = (
    select(
        Account.id,
        Account.balance_nanos,
        func.coalesce(_credits.c.total, 0),
        func.coalesce(_usage.c.total, 0),
    )
    .outerjoin(_credits, _credits.c.account_id == Account.id)
    .outerjoin(_usage, _usage.c.account_id == Account.id)
    .order_by(Account.id)
)


async def reconcile(db: Database, *, fix: bool = False) -> list[BalanceDiff]:
    """Every account whose stored balance differs from credits minus usage (by account id)."""
    async with db.session() as session:
        rows = (await session.execute(_BALANCES)).all()
        diffs = [
            BalanceDiff(
                account_id, int(stored), int(credit) - int(used), int(stored) - int(credit) + int(used)
            )
            for account_id, stored, credit, used in rows
            if int(stored) != int(credit) - int(used)
        ]
        if not fix or not diffs:
            return diffs
        repaired: list[BalanceDiff] = []
        for diff in diffs:
            result = await session.execute(
                update(Account)
                .where(Account.id == diff.account_id, Account.balance_nanos == diff.stored)
                .values(balance_nanos=diff.computed)
                .execution_options(synchronize_session=False)
            )
            changed = getattr(result, "rowcount", 0) == 1
            repaired.append(
                BalanceDiff(diff.account_id, diff.stored, diff.computed, diff.difference, fixed=changed)
            )
        await session.commit()
        return repaired
