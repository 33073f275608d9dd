"""Credit: every balance change that is not usage, as a ``credit_entries`` row.

Each change writes its entry and moves ``accounts.balance_nanos`` in the same
transaction, so the balance always equals the sum of the entries minus the billed
usage (what ``billing.reconcile`` checks). Kinds:

* ``topup``: money paid in by an operator or a payment provider;
* ``redeem``: credit from a redeem code (an entry of 0 records a plan-only code);
* ``grant``: a plan's included credit, written when subscribing;
* ``adjustment``: a manual correction, positive or negative;
* ``purchase``: a negative entry, a plan paid from the balance (``payments``).

After the transaction commits, the caller tells the gateway's limiter about each
non-zero entry (``on_credit(account_id, nanos, entry_id)``), since the limiter's live
balance counter, not the database, is authoritative while it exists.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import fields, repository
from claudestore.accounts.fields import Conflict
from claudestore.accounts.money import format_usd
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.billing_models import CreditEntry

KINDS = ("topup", "redeem", "grant", "adjustment", "purchase")
#: The most an account can hold, either sign: $4 billion, well inside BIGINT (9.2e18 nano-dollars;
#: past it PostgreSQL fails and SQLite silently turns the balance into an inexact float).
MAX_BALANCE_NANOS = 4 * 10**18


async def add_credit(
    session: AsyncSession, account_id: int, nanos: int, kind: str, reference: str | None = None
) -> CreditEntry:
    """Write one credit entry and move the balance by ``nanos`` (any sign), in this transaction.

    The balance moves first: its row lock, held to the commit, is taken before the entry's id,
    so one account's entries commit in id order and a balance read names the newest entry it
    includes (the limiter's seed relies on it: ``limits.base``)."""
    fields.choice(kind, "kind", KINDS)
    reference = fields.optional_text(reference, "reference", max_len=200)
    if not await repository.add_balance(session, account_id, nanos, bound=MAX_BALANCE_NANOS):
        if await repository.balance(session, account_id) is None:
            raise NotFound(f"No account with id {account_id}.")
        raise Conflict(
            f"This would take the balance beyond ${format_usd(MAX_BALANCE_NANOS)} (either sign), "
            "the most an account can hold.",
            param="usd",
        )
    return await repository.insert_credit_entry(session, account_id, nanos, kind, reference)


async def top_up(
    session: AsyncSession, account_id: int, nanos: int, reference: str | None = None, *, kind: str = "topup"
) -> int:
    """Add ``nanos`` (> 0) to the account's balance; returns the credit entry's id."""
    if isinstance(nanos, bool) or not isinstance(nanos, int) or nanos <= 0:
        raise InvalidRequest("A top-up must add a positive amount.", param="usd")
    entry = await add_credit(session, account_id, nanos, kind, reference)
    return entry.id


async def adjust(session: AsyncSession, account_id: int, nanos: int, reference: str | None = None) -> int:
    """A manual correction (negative takes money away); returns the credit entry's id."""
    if nanos == 0:
        raise InvalidRequest("An adjustment of 0 changes nothing.", param="usd")
    entry = await add_credit(session, account_id, nanos, "adjustment", reference)
    return entry.id


async def history(
    session: AsyncSession, account_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[CreditEntry]:
    """The account's credit entries, newest first (page with ``before_id``)."""
    return await repository.credit_entries(session, account_id, limit=limit, before_id=before_id)


async def get_entry(session: AsyncSession, entry_id: int) -> CreditEntry:
    entry = await session.get(CreditEntry, entry_id)
    if entry is None:
        raise NotFound(f"No credit entry with id {entry_id}.")
    return entry


async def balance(session: AsyncSession, account_id: int) -> int:
    """The account's stored balance in nano-dollars."""
    value = await repository.balance(session, account_id)
    if value is None:
        raise NotFound(f"No account with id {account_id}.")
    return value
