"""Self-service sign-up and log-in lookups for the web store.

Sign-up creates, in the caller's transaction, a user with a password, a personal account
named after them and an ``owner`` membership linking the two. A person who was added to an
account by the operator (a user without a password) can sign up with that e-mail address and
so set their password: they keep their memberships and get no second account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import accounts, fields, passwords, repository
from claudestore.accounts.fields import Conflict
from claudestore.storage.billing_models import Account, Membership, User


@dataclass(frozen=True, slots=True)
class Registered:
    user: User
    account: Account


async def register(session: AsyncSession, email: str, password: str, name: str | None = None) -> Registered:
    address = fields.email(email.strip().lower())
    display = fields.optional_text(name.strip() if name else None, "name", max_len=200) or None
    passwords.check_new_password(password, address)
    user = await repository.user_by_email(session, address)
    if user is not None and user.password_hash is not None:
        raise Conflict(
            "An account with this e-mail address exists already; log in instead.", param="email"
        )
    password_hash = await passwords.hash_password(password)
    if user is None:
        user = User(email=address, name=display, is_admin=False, password_hash=password_hash)
        session.add(user)
        await session.flush()
    else:
        user.password_hash = password_hash
        user.name = user.name or display
    account = await primary_account(session, user.id)
    if account is None:
        account = await accounts.create_account(session, {"name": display or address, "email": address})
        session.add(Membership(account_id=account.id, user_id=user.id, role="owner"))
        await session.flush()
    return Registered(user, account)


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The user whose e-mail and password these are, or None (same work either way)."""
    address = email.strip().lower()
    user = await repository.user_by_email(session, address) if "@" in address else None
    ok = await passwords.verify_password(user.password_hash if user else None, password)
    return user if ok else None


async def primary_account(session: AsyncSession, user_id: int) -> Account | None:
    """The account a user works in: the first they own, else the first they belong to."""
    rows = await session.execute(
        select(Account, Membership.role)
        .join(Membership, Membership.account_id == Account.id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.id)
    )
    found = rows.all()
    owned = [a for a, role in found if role == "owner"]
    return (owned or [a for a, _ in found] or [None])[0]
