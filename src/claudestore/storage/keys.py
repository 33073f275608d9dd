"""API keys: format, hashing and the repository functions.

A key looks like ``sk-cs-`` followed by 43 URL-safe characters (256 random bits).
Only ``hash_key(raw)`` is stored, plus the visible ``prefix`` (``sk-cs-`` and the
next 8 characters) so people can tell keys apart. The raw key is returned once,
by :func:`create_key`, and never stored or logged.

Repository functions take an ``AsyncSession`` and never commit: the caller owns
the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.storage.models import ApiKey, utcnow

KEY_PREFIX = "sk-cs-"
#: Random characters after ``sk-cs-`` that are shown (and stored) as the key's prefix.
PREFIX_CHARS = 8
#: Length of a raw key: ``sk-cs-`` + ``secrets.token_urlsafe(32)`` (43 characters).
KEY_LENGTH = len(KEY_PREFIX) + 43

PEPPER_ENV = "CLAUDESTORE_KEY_PEPPER"
#: Used when ``CLAUDESTORE_KEY_PEPPER`` is unset. It is public, so it adds nothing
#: against someone holding a copy of the database; set your own secret pepper in
#: production. Changing the pepper invalidates every existing key.
DEFAULT_KEY_PEPPER = "claudestore-default-key-pepper-v1"

_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class AmbiguousPrefix(LookupError):
    """More than one key starts with the given prefix; use the key's id instead."""


def key_pepper() -> bytes:
    """The server pepper: ``$CLAUDESTORE_KEY_PEPPER``, else :data:`DEFAULT_KEY_PEPPER`."""
    return (os.environ.get(PEPPER_ENV) or DEFAULT_KEY_PEPPER).encode()


def pepper_is_default() -> bool:
    """True when no pepper is configured (worth a warning at server start)."""
    return not os.environ.get(PEPPER_ENV)


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_prefix(raw: str) -> str:
    """The visible start of a key, e.g. ``sk-cs-Ab12Cd34``."""
    return raw[: len(KEY_PREFIX) + PREFIX_CHARS]


def looks_like_key(raw: str) -> bool:
    """Cheap shape check, so garbage never costs a hash or a database query."""
    return (
        len(raw) == KEY_LENGTH and raw.startswith(KEY_PREFIX) and _URLSAFE.issuperset(raw[len(KEY_PREFIX) :])
    )


def hash_key(raw: str, *, pepper: bytes | None = None) -> str:
    """HMAC-SHA256 of the key under the server pepper, as 64 hex characters.

    A fast hash is the right tool here, not a password hash such as argon2 or
    bcrypt: those are slow on purpose to protect low-entropy passwords from
    guessing, while these keys carry 256 random bits, so guessing is hopeless at
    any speed and a slow hash would only add latency to every request. The pepper
    (kept outside the database) means a leaked table alone cannot even be used to
    test candidate keys.
    """
    mac = _keyed(key_pepper() if pepper is None else pepper).copy()
    mac.update(raw.encode())
    return mac.hexdigest()


_KEYED: dict[bytes, hmac.HMAC] = {}


def _keyed(pepper: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 state keyed with ``pepper`` (same digests as ``hmac.digest``). Copying it
    per request skips OpenSSL's algorithm lookup and key setup, which, run once per request
    with cold caches, cost several microseconds."""
    mac = _KEYED.get(pepper)
    if mac is None:
        if len(_KEYED) >= 8:  # one pepper per process in practice; tests may use a few
            _KEYED.clear()
        mac = _KEYED[pepper] = hmac.new(pepper, digestmod=hashlib.sha256)
    return mac


async def create_key(
    session: AsyncSession, name: str, expires_at: datetime | None = None
) -> tuple[str, ApiKey]:
    """Create a key; returns ``(raw_key, row)``. Show ``raw_key`` once, then forget it."""
    name = name.strip()
    if not name:
        raise ValueError("A key needs a non-empty name")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    raw = generate_key()
    key = ApiKey(name=name, prefix=key_prefix(raw), key_hash=hash_key(raw), expires_at=expires_at)
    session.add(key)
    await session.flush()
    return raw, key


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    """All keys, revoked and expired ones included, oldest first."""
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.id)))


async def get_key(session: AsyncSession, ident: int | str) -> ApiKey | None:
    """A key by id (an int, or a string of digits) or by its exact prefix.

    Raises :class:`AmbiguousPrefix` if several keys share the prefix.
    """
    if isinstance(ident, int) or ident.strip().isdigit():
        return await session.get(ApiKey, int(ident))
    matches = list(await session.scalars(select(ApiKey).where(ApiKey.prefix == ident.strip()).limit(2)))
    if len(matches) > 1:
        raise AmbiguousPrefix(f"Several keys start with {ident!r}; revoke by id instead")
    return matches[0] if matches else None


async def revoke_key(session: AsyncSession, ident: int | str) -> ApiKey | None:
    """Revoke a key by id or prefix; ``None`` if there is no such key.

    Revoking an already revoked key keeps its original ``revoked_at``.
    """
    key = await get_key(session, ident)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


async def find_key_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    """The key with this hash (whatever its status), via the unique index."""
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if key is None or not hmac.compare_digest(key.key_hash, key_hash):
        return None
    return key


async def find_key(session: AsyncSession, raw: str) -> ApiKey | None:
    """The key matching a raw key (whatever its status), or ``None``."""
    if not looks_like_key(raw):
        return None
    return await find_key_by_hash(session, hash_key(raw))


async def touch_keys(session: AsyncSession, used_at: Mapping[int, datetime]) -> None:
    """Record last use times, ``{key_id: when}``, as one batched UPDATE.

    A stored ``last_used_at`` is never moved backwards, so flushes from several
    gateway processes may land in any order.
    """
    if not used_at:
        return
    table = cast(Table, ApiKey.__table__)
    statement = (
        update(table)
        .where(table.c.id == bindparam("key_id"))
        .where(or_(table.c.last_used_at.is_(None), table.c.last_used_at < bindparam("used_at")))
        .values(last_used_at=bindparam("used_at"))
    )
    await session.execute(statement, [{"key_id": k, "used_at": t} for k, t in used_at.items()])
