"""API keys that belong to an account.

Keys are made by ``storage.keys.create_key`` (same format, same hashing), then tied to
the account. A key's own limits and ``allowed_models`` only ever narrow what the plan
allows: the gateway applies the key's scope and the plan's scope both, and a model must
match the plan's patterns and the key's (see ``admission.policy``). That is why
customers may set them on their own keys too.

Functions that take ``account_id`` treat a key of another account exactly like a
missing key (``NotFound``), so callers cannot learn other accounts' key ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import fields
from claudestore.accounts.fields import Conflict
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.billing_models import Account
from claudestore.storage.keys import create_key
from claudestore.storage.models import ApiKey, utcnow

LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "concurrency_limit")
KEY_FIELDS = ("name", "expires_at", "expires_in_days", "allowed_models", *LIMIT_FIELDS)
#: Active (not revoked) keys one account may hold; a guard against runaway scripts.
MAX_ACTIVE_KEYS = 100


async def _account(session: AsyncSession, account_id: int) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"No account with id {account_id}.")
    return account


def _restrictions(data: Mapping[str, Any]) -> dict[str, Any]:
    """The validated ``allowed_models`` and limits present in ``data`` (null clears one)."""
    changes: dict[str, Any] = {}
    if "allowed_models" in data:
        changes["allowed_models"] = fields.optional_patterns(data["allowed_models"])
    for name in LIMIT_FIELDS:
        if name in data:
            changes[name] = fields.optional_limit(data[name], name)
    return changes


async def create_account_key(
    session: AsyncSession, account_id: int, data: Mapping[str, Any]
) -> tuple[str, ApiKey]:
    """Create a key for the account; returns ``(raw_key, row)`` (show the raw key once).

    ``data``: ``name`` (default "default"), ``expires_at`` or ``expires_in_days``,
    ``allowed_models`` (fnmatch patterns), ``rpm_limit``, ``tpm_limit``, ``concurrency_limit``.
    """
    fields.reject_unknown(data, KEY_FIELDS)
    account = await _account(session, account_id)
    if account.disabled_at is not None:
        raise InvalidRequest(f"Account {account_id} is disabled; enable it before creating keys.")
    active = await session.scalar(
        select(func.count()).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    )
    if int(active or 0) >= MAX_ACTIVE_KEYS:
        raise Conflict(
            f"Account {account_id} already has {MAX_ACTIVE_KEYS} active keys; revoke unused ones first."
        )
    name = fields.text(data.get("name", "default"), "name", max_len=200)
    expires_at = fields.expiry(data, utcnow())
    restrictions = _restrictions(data)  # validated before the key exists
    raw, key = await create_key(session, name, expires_at)
    key.account_id = account_id
    for attribute, value in restrictions.items():
        setattr(key, attribute, value)
    await session.flush()
    return raw, key


async def list_keys(session: AsyncSession, account_id: int | None = None) -> list[ApiKey]:
    """Keys of one account, or every key (operator keys included) when ``account_id`` is None."""
    statement = select(ApiKey).order_by(ApiKey.id)
    if account_id is not None:
        await _account(session, account_id)
        statement = statement.where(ApiKey.account_id == account_id)
    return list(await session.scalars(statement))


async def get_key(session: AsyncSession, key_id: int, *, account_id: int | None = None) -> ApiKey:
    """A key by id; with ``account_id``, only if it belongs to that account."""
    key = await session.get(ApiKey, key_id)
    if key is None or (account_id is not None and key.account_id != account_id):
        raise NotFound(f"No API key with id {key_id}.")
    return key


async def update_key(
    session: AsyncSession, key_id: int, data: Mapping[str, Any], *, account_id: int | None = None
) -> ApiKey:
    """Rename, change the expiry (``expires_at``: null removes it), models or limits."""
    fields.reject_unknown(data, KEY_FIELDS)
    key = await get_key(session, key_id, account_id=account_id)
    if key.revoked_at is not None:
        raise InvalidRequest(f"Key {key_id} is revoked and cannot be changed; create a new one.")
    if "name" in data:
        key.name = fields.text(data["name"], "name", max_len=200)
    if "expires_at" in data or "expires_in_days" in data:
        key.expires_at = fields.expiry(data, utcnow())
    for attribute, value in _restrictions(data).items():
        setattr(key, attribute, value)
    await session.flush()
    return key


async def revoke_key(session: AsyncSession, key_id: int, *, account_id: int | None = None) -> ApiKey:
    """Revoke a key (idempotent: a revoked key keeps its first ``revoked_at``).

    The gateway notices within its key cache TTL (5 s by default).
    """
    key = await get_key(session, key_id, account_id=account_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key
