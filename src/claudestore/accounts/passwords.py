"""Password hashing for web log-ins: Argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).

Hashing costs tens of milliseconds and 64 MiB, by design, so it runs in a worker thread and
at most two at a time: a burst of log-ins cannot stall the event loop that relays streams, nor
exhaust memory. ``verify`` of an unknown user still spends the same work on a dummy hash, so
the response time does not tell which e-mail addresses have accounts.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from claudestore.core.errors import InvalidRequest

MIN_LENGTH = 10
MAX_LENGTH = 256  # argon2 takes any length; a cap keeps a huge "password" from being a cheap DoS

_hasher = PasswordHasher()
_slots = asyncio.Semaphore(2)
_DUMMY = _hasher.hash("claudestore-dummy-password")


def check_new_password(password: str, email: str) -> None:
    """The rules for a new password, with messages a person can act on."""
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"password: use at least {MIN_LENGTH} characters.", param="password")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"password: use at most {MAX_LENGTH} characters.", param="password")
    if password.strip().lower() == email.strip().lower():
        raise InvalidRequest("password: must not be your e-mail address.", param="password")


async def hash_password(password: str) -> str:
    async with _slots:
        return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; ``stored=None`` (no such user) is always False."""
    if len(password) > MAX_LENGTH:
        return False
    async with _slots:
        return await asyncio.to_thread(_verify, stored, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
