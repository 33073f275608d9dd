"""API key authentication on the request path.

:class:`KeyAuthenticator` answers "which key is this?" for every request, so it
is built to stay off the database:

* lookups are cached by key hash for ``ttl`` seconds: a cached key costs one
  HMAC and a dict lookup, no query; a revocation is noticed within ``ttl``;
* unknown keys are cached for ``negative_ttl`` in a separate bounded map, so a
  flood of bad keys neither reaches the database repeatedly nor evicts good keys;
  malformed keys are rejected before hashing;
* concurrent misses for the same key share one query (single-flight), and at
  most ``max_concurrent_lookups`` distinct misses query at once;
* ``last_used_at`` is recorded in memory and written by :meth:`flush_touches`,
  one batched UPDATE every ``flush_interval`` seconds from the loop that
  :meth:`start` launches (and :meth:`stop` flushes one last time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from claudestore.core.errors import AuthenticationFailed, InternalError
from claudestore.storage.db import Database
from claudestore.storage.keys import (
    KEY_PREFIX,
    find_key_by_hash,
    hash_key,
    key_pepper,
    looks_like_key,
    touch_keys,
)
from claudestore.storage.models import ApiKey

if TYPE_CHECKING:
    from claudestore.admission.auth_throttle import AuthThrottle

log = logging.getLogger(__name__)

MISSING_KEY = "Missing API key: send it in the x-api-key header or as Authorization: Bearer <key>."
MALFORMED_KEY = (
    f"Invalid API key: ClaudeStore keys start with {KEY_PREFIX!r}; check that you sent the whole key."
)
UNKNOWN_KEY = "Invalid API key."
REVOKED_KEY = "This API key has been revoked."


def _expired_message(expires_ts: float) -> str:
    when = datetime.fromtimestamp(expires_ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"This API key expired at {when}; ask for a new key."


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the rest of the gateway learns about an authenticated key."""

    id: int
    name: str
    prefix: str
    expires_at: datetime | None


class _Entry:
    """A cached lookup: a usable key (``info``) or a ready rejection (``error``)."""

    __slots__ = ("deadline", "error", "expires_ts", "info")

    def __init__(
        self,
        deadline: float,
        info: KeyInfo | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        self.deadline = deadline  # time.monotonic() after which the entry is stale
        self.info = info
        self.error = error  # (message, code)
        self.expires_ts = info.expires_at.timestamp() if info and info.expires_at else None


class KeyAuthenticator:
    def __init__(
        self,
        db: Database,
        ttl: float = 5.0,
        negative_ttl: float = 1.0,
        *,
        max_entries: int = 100_000,
        max_negative_entries: int = 10_000,
        max_concurrent_lookups: int = 8,
        flush_interval: float = 5.0,
    ) -> None:
        self._db = db
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.flush_interval = flush_interval
        self._max_entries = max_entries
        self._max_negative = max_negative_entries
        self._pepper = key_pepper()
        self._known: dict[str, _Entry] = {}  # keys that exist (usable, revoked or expired)
        self._unknown: dict[str, _Entry] = {}  # hashes that matched no key
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        self._lookup_slots = asyncio.Semaphore(max_concurrent_lookups)
        self._touches: dict[int, float] = {}  # key id -> time.time() of last use
        self._flusher: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        # Per-client failed-authentication throttle (admission.auth_throttle); set by the app.
        self.throttle: AuthThrottle | None = None

    # -- request path -------------------------------------------------------

    async def authenticate(self, raw: str | None) -> KeyInfo:
        """The key's info, or :class:`AuthenticationFailed` with a message for the caller."""
        if raw is None or not (raw := raw.strip()):
            raise AuthenticationFailed(MISSING_KEY, code="missing_api_key")
        if not looks_like_key(raw):
            raise AuthenticationFailed(MALFORMED_KEY, code="invalid_api_key")
        digest = hash_key(raw, pepper=self._pepper)
        entry = self._known.get(digest) or self._unknown.get(digest)
        if entry is None or entry.deadline <= time.monotonic():
            entry = await self._lookup(digest)
        info = entry.info
        if info is None:
            message, code = entry.error or (UNKNOWN_KEY, "invalid_api_key")
            raise AuthenticationFailed(message, code=code)
        now = time.time()
        if entry.expires_ts is not None and now >= entry.expires_ts:
            raise AuthenticationFailed(_expired_message(entry.expires_ts), code="api_key_expired")
        self._touches[info.id] = now
        return info

    def authenticate_client(self, raw: str | None, scope: MutableMapping[str, Any]) -> Awaitable[KeyInfo]:
        """:meth:`authenticate` for the request ``scope``: with a ``throttle``, failures are
        counted per client address and a throttled client is refused (429) before any lookup,
        unless :meth:`knows` the key."""
        throttle = self.throttle
        if throttle is None:
            return self.authenticate(raw)
        return throttle.guard(self, raw, scope)

    def knows(self, raw: str | None) -> bool:
        """The key is in the positive cache (it existed at its last lookup, fresh or stale):
        one HMAC and a dict lookup, no query."""
        if raw is None or not looks_like_key(raw := raw.strip()):
            return False
        return hash_key(raw, pepper=self._pepper) in self._known

    def clear(self) -> None:
        """Forget every cached lookup (e.g. right after revoking a key in this process)."""
        self._known.clear()
        self._unknown.clear()

    async def _lookup(self, digest: str) -> _Entry:
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(digest))
            self._inflight[digest] = task
            task.add_done_callback(lambda done: self._lookup_done(digest, done))
        # shield: a caller that goes away must not cancel the query others wait on
        return await asyncio.shield(task)

    def _lookup_done(self, digest: str, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(digest) is task:
            del self._inflight[digest]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported twice

    async def _load(self, digest: str) -> _Entry:
        try:
            async with self._lookup_slots, self._db.session() as session:
                key = await find_key_by_hash(session, digest)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("API key lookup failed: %s", exc.__class__.__name__, exc_info=True)
            raise InternalError("Could not verify the API key right now; please retry.") from exc
        now = time.monotonic()
        if key is None:
            entry = _Entry(now + self.negative_ttl)
            self._store(self._unknown, digest, entry, self._max_negative)
        else:
            entry = self._entry_for(key, now + self.ttl)
            self._unknown.pop(digest, None)
            self._store(self._known, digest, entry, self._max_entries)
        return entry

    @staticmethod
    def _entry_for(key: ApiKey, deadline: float) -> _Entry:
        if key.revoked_at is not None:
            return _Entry(deadline, error=(REVOKED_KEY, "api_key_revoked"))
        return _Entry(deadline, info=KeyInfo(key.id, key.name, key.prefix, key.expires_at))

    @staticmethod
    def _store(cache: dict[str, _Entry], digest: str, entry: _Entry, limit: int) -> None:
        # Insertion order approximates expiry order, so evicting the oldest is FIFO-by-age.
        cache.pop(digest, None)
        while len(cache) >= limit > 0:
            del cache[next(iter(cache))]
        cache[digest] = entry

    # -- last_used_at ---------------------------------------------------------

    async def flush_touches(self) -> int:
        """Write recorded uses in one batched UPDATE; returns how many keys were touched.

        On failure the uses are kept for the next flush and the error is raised.
        """
        if not self._touches:
            return 0
        touches, self._touches = self._touches, {}
        try:
            async with self._db.session() as session:
                await touch_keys(session, {k: datetime.fromtimestamp(t, UTC) for k, t in touches.items()})
                await session.commit()
        except BaseException:
            for key_id, used in touches.items():
                if self._touches.get(key_id, 0.0) < used:
                    self._touches[key_id] = used
            raise
        return len(touches)

    def start(self) -> None:
        """Start flushing touches every ``flush_interval`` seconds (needs a running loop)."""
        if self._flusher is not None and not self._flusher.done():
            return
        self._stopping = asyncio.Event()
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_loop(self._stopping), name="claudestore-key-touches"
        )

    async def stop(self) -> None:
        """Stop the flush loop and write what is left (a failed flush is logged, not raised)."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None and self._stopping is not None:
            self._stopping.set()
            await flusher
        await self._flush_logged()

    async def _flush_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.flush_interval)
            await self._flush_logged()

    async def _flush_logged(self) -> None:
        try:
            await self.flush_touches()
        except Exception:
            log.warning("Could not record API key usage; will retry", exc_info=True)
