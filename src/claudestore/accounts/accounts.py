"""Accounts and their members.

An account is who pays: a person or an organisation. Members are users (unique by
email) with a role on the account: ``owner``, ``admin`` or ``member``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import fields, repository
from claudestore.accounts.fields import Conflict
from claudestore.accounts.money import format_usd
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.billing_models import Account, Membership, User
from claudestore.storage.models import utcnow

KINDS = ("person", "organisation")
ROLES = ("owner", "admin", "member")
ACCOUNT_FIELDS = ("name", "kind", "email")


@dataclass(frozen=True, slots=True)
class Member:
    membership: Membership
    user: User


@dataclass(frozen=True, slots=True)
class AccountCounts:
    total: int
    disabled: int


async def get_account(session: AsyncSession, account_id: int) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"No account with id {account_id}; list the accounts to see their ids.")
    return account


async def create_account(session: AsyncSession, data: Mapping[str, Any]) -> Account:
    """``{"name": ..., "kind": "person"|"organisation", "email": ...}``; only ``name`` is required."""
    fields.reject_unknown(data, ACCOUNT_FIELDS)
    if "name" not in data:
        raise InvalidRequest("name: required", param="name")
    account = Account(
        name=fields.text(data["name"], "name", max_len=200),
        kind=fields.choice(data.get("kind", "person"), "kind", KINDS),
        email=fields.optional_email(data.get("email")),
        balance_nanos=0,
    )
    session.add(account)
    await session.flush()
    return account


async def list_accounts(
    session: AsyncSession, *, include_disabled: bool = True, limit: int = 100, offset: int = 0
) -> list[Account]:
    statement = select(Account).order_by(Account.id).limit(limit).offset(offset)
    if not include_disabled:
        statement = statement.where(Account.disabled_at.is_(None))
    return list(await session.scalars(statement))


async def count_accounts(session: AsyncSession) -> AccountCounts:
    """How many accounts there are, and how many of them are disabled (one query, no cap)."""
    total, disabled = await repository.count_accounts(session)
    return AccountCounts(total=total, disabled=disabled)


async def update_account(session: AsyncSession, account_id: int, data: Mapping[str, Any]) -> Account:
    """Change ``name``, ``kind``, ``email`` and/or ``disabled`` (true disables, false enables)."""
    fields.reject_unknown(data, (*ACCOUNT_FIELDS, "disabled"))
    account = await get_account(session, account_id)
    if "name" in data:
        account.name = fields.text(data["name"], "name", max_len=200)
    if "kind" in data:
        account.kind = fields.choice(data["kind"], "kind", KINDS)
    if "email" in data:
        account.email = fields.optional_email(data["email"])
    if "disabled" in data:
        disabled = fields.boolean(data["disabled"], "disabled")
        if disabled and account.disabled_at is None:
            account.disabled_at = utcnow()
        elif not disabled:
            account.disabled_at = None
    await session.flush()
    return account


async def set_disabled(session: AsyncSession, account_id: int, disabled: bool) -> Account:
    """Disable (its keys stop working within the policy cache's TTL) or re-enable an account."""
    return await update_account(session, account_id, {"disabled": disabled})


async def delete_account(session: AsyncSession, account_id: int, *, force: bool = False) -> None:
    """Delete an account with its keys, members, subscriptions and credit history.

    The usage ledger keeps its rows. An account that holds money (a balance or any
    credit entries) is only deleted with ``force``: disabling it keeps the records.
    """
    account = await get_account(session, account_id)
    entries = await repository.count_credit_entries(session, account_id)
    if not force and (account.balance_nanos != 0 or entries):
        raise Conflict(
            f"Account {account_id} has a balance of ${format_usd(account.balance_nanos)} and {entries} credit "
            "entries; disable it instead, or delete it with force to drop its credit history too."
        )
    await session.delete(account)
    await session.flush()


# -- members ------------------------------------------------------------------------------


async def add_member(session: AsyncSession, account_id: int, data: Mapping[str, Any]) -> tuple[Member, bool]:
    """Add the user with ``email`` (created if new) with ``role``; returns ``(member, created)``.

    Adding someone who is already a member changes their role (and ``created`` is False).
    """
    fields.reject_unknown(data, ("email", "role", "name"))
    await get_account(session, account_id)
    if "email" not in data:
        raise InvalidRequest("email: required", param="email")
    address = fields.email(data["email"])
    role = fields.choice(data.get("role", "member"), "role", ROLES)
    name = fields.optional_text(data.get("name"), "name", max_len=200)
    user = await repository.user_by_email(session, address)
    if user is None:
        user = User(email=address, name=name, is_admin=False)
        session.add(user)
        await session.flush()
    elif name and not user.name:
        user.name = name
    existing = await repository.membership(session, account_id, user.id)
    if existing is not None:
        existing.role = role
        await session.flush()
        return Member(existing, user), False
    link = Membership(account_id=account_id, user_id=user.id, role=role)
    session.add(link)
    await session.flush()
    return Member(link, user), True


async def list_members(session: AsyncSession, account_id: int) -> list[Member]:
    await get_account(session, account_id)
    return [Member(m, u) for m, u in await repository.members(session, account_id)]


async def remove_member(session: AsyncSession, account_id: int, user: int | str) -> Member:
    """Remove a member by user id or email. The user record itself is kept."""
    await get_account(session, account_id)
    found = (
        await repository.user_by_email(session, fields.email(user, "user"))
        if isinstance(user, str) and not user.isdigit()
        else await session.get(User, int(user))
    )
    link = await repository.membership(session, account_id, found.id) if found else None
    if found is None or link is None:
        raise NotFound(f"{user!r} is not a member of account {account_id}.")
    await session.delete(link)
    await session.flush()
    return Member(link, found)
