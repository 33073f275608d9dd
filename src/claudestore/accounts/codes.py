"""Redeem codes: credit and/or a plan, usable ``max_uses`` times, until an expiry.

A code looks like ``CS-7KQM-X2PD-9TWC-H4NB-RJ3E``: 20 characters from an alphabet
without look-alikes (no 0/O, 1/I/L), about 99 random bits. Codes are read
forgivingly (case, spaces and dashes do not matter) and stored like API keys: only
``hash_key`` of the canonical form, plus the visible prefix (``CS-7KQM``). The raw
codes are returned once, by :func:`create_codes`.

Redeeming counts a use with one conditional UPDATE (``uses < max_uses``), so
concurrent redemptions can never exceed ``max_uses``; the same account cannot redeem
one code twice. Each redemption writes a ``redeem`` credit entry (referenced
``code:<id>``, amount 0 for a plan-only code) and subscribes to the code's plan.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import credit, fields, repository, subscriptions
from claudestore.accounts.fields import Conflict
from claudestore.accounts.money import credit_nanos
from claudestore.accounts.plans import get_plan
from claudestore.core.errors import InvalidRequest, NotFound, PermissionDenied
from claudestore.storage.billing_models import Account, CreditEntry, RedeemCode
from claudestore.storage.keys import hash_key
from claudestore.storage.models import utcnow

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_PREFIX = "CS"
GROUPS, GROUP_LENGTH = 5, 4
MAX_BATCH = 1000
CODE_FIELDS = ("count", "credit_usd", "credit_nanos", "plan", "max_uses", "expires_at", "expires_in_days")
_NOT_CODE = re.compile(r"[^A-Z0-9]")
UNKNOWN_CODE = "No such redeem code; check that you typed it completely."


@dataclass(frozen=True, slots=True)
class Redeemed:
    code: RedeemCode
    entry: CreditEntry  # the ``redeem`` entry (amount 0 for a plan-only code)
    subscribed: subscriptions.Subscribed | None

    @property
    def credit_entries(self) -> list[CreditEntry]:
        """The non-zero credit entries written (the code's credit, the plan's grant)."""
        grant = self.subscribed.grant if self.subscribed else None
        return [e for e in (self.entry, grant) if e is not None and e.amount_nanos != 0]


def generate_code() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
    groups = [chars[i : i + GROUP_LENGTH] for i in range(0, len(chars), GROUP_LENGTH)]
    return "-".join((CODE_PREFIX, *groups))


def canonical_code(raw: str) -> str | None:
    """The canonical form of a code as someone typed it, or None if it cannot be one."""
    compact = _NOT_CODE.sub("", raw.upper())
    body = compact[len(CODE_PREFIX) :]
    if not compact.startswith(CODE_PREFIX) or len(body) != GROUPS * GROUP_LENGTH:
        return None
    if not set(body) <= set(ALPHABET):
        return None
    return "-".join((CODE_PREFIX, *(body[i : i + GROUP_LENGTH] for i in range(0, len(body), GROUP_LENGTH))))


def code_prefix(canonical: str) -> str:
    return canonical[: len(CODE_PREFIX) + 1 + GROUP_LENGTH]


async def create_codes(session: AsyncSession, data: Mapping[str, Any]) -> list[tuple[str, RedeemCode]]:
    """Create ``count`` codes; returns ``[(raw_code, row)]``. Show the raw codes once.

    ``data``: ``count`` (1), ``credit_usd`` or ``credit_nanos``, ``plan`` (id or name),
    ``max_uses`` (1; per code), ``expires_at`` or ``expires_in_days``. A code needs
    credit, a plan, or both.
    """
    fields.reject_unknown(data, CODE_FIELDS)
    count = fields.integer(data.get("count", 1), "count", minimum=1, maximum=MAX_BATCH)
    amount = credit_nanos(dict(data), usd_field="credit_usd", nanos_field="credit_nanos")
    max_uses = fields.integer(data.get("max_uses", 1), "max_uses", minimum=1, maximum=1_000_000)
    expires_at = fields.expiry(data, utcnow())
    plan_id = None
    if data.get("plan") is not None:
        ident = data["plan"]
        if isinstance(ident, bool) or not isinstance(ident, int | str):
            raise InvalidRequest("plan: expected a plan id or name", param="plan")
        plan = await get_plan(session, ident)
        if plan.archived_at is not None:
            raise InvalidRequest(f"Plan {plan.name!r} is archived; codes cannot start it.", param="plan")
        plan_id = plan.id
    if amount == 0 and plan_id is None:
        raise InvalidRequest(
            "A code needs credit (credit_usd) or a plan (plan), or both.", param="credit_usd"
        )
    made: list[tuple[str, RedeemCode]] = []
    for _ in range(count):
        raw = generate_code()
        row = RedeemCode(
            code_hash=hash_key(raw),
            prefix=code_prefix(raw),
            credit_nanos=amount,
            plan_id=plan_id,
            max_uses=max_uses,
            uses=0,
            expires_at=expires_at,
        )
        session.add(row)
        made.append((raw, row))
    await session.flush()
    return made


async def list_codes(
    session: AsyncSession, *, limit: int = 100, before_id: int | None = None
) -> list[RedeemCode]:
    """Codes, newest first (page with ``before_id``)."""
    statement = select(RedeemCode)
    if before_id is not None:
        statement = statement.where(RedeemCode.id < before_id)
    return list(await session.scalars(statement.order_by(RedeemCode.id.desc()).limit(limit)))


async def delete_code(session: AsyncSession, code_id: int) -> RedeemCode:
    """Delete a code; redemptions already made stay (their credit entries keep ``code:<id>``)."""
    row = await session.get(RedeemCode, code_id)
    if row is None:
        raise NotFound(f"No redeem code with id {code_id}.")
    await session.delete(row)
    await session.flush()
    return row


async def redeem(
    session: AsyncSession, account_id: int, raw: str, *, now: datetime | None = None
) -> Redeemed:
    """Apply a code to the account: its credit (as a ``redeem`` entry) and its plan."""
    now = now or utcnow()
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"No account with id {account_id}.")
    if account.disabled_at is not None:
        raise PermissionDenied("This account is disabled; contact the operator of this gateway.")
    canonical = canonical_code(fields.text(raw, "code", max_len=100))
    code = await repository.code_by_hash(session, hash_key(canonical)) if canonical else None
    if code is None:
        raise NotFound(UNKNOWN_CODE)
    if code.expires_at is not None and code.expires_at <= now:
        raise InvalidRequest(
            f"This code expired on {code.expires_at:%Y-%m-%d %H:%M} UTC.", code="code_expired"
        )
    # Claim first: it takes the row (PostgreSQL) or database (SQLite) write lock, so the
    # duplicate check below sees every redemption of this code that committed before us.
    if not await repository.claim_code_use(session, code.id, now):
        raise Conflict("This code has already been used.", code="code_used")
    reference = f"code:{code.id}"
    if await repository.has_credit_entry(session, account_id, "redeem", reference):
        raise Conflict("This account has already redeemed this code.", code="code_already_redeemed")
    entry = await credit.add_credit(session, account_id, code.credit_nanos, "redeem", reference)
    subscribed = None
    if code.plan_id is not None:
        subscribed = await subscriptions.subscribe(session, account_id, code.plan_id, now=now)
    await session.refresh(code)
    return Redeemed(code, entry, subscribed)
