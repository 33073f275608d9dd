"""Deliver credit entries written by anyone (admin API, CLI, another process) to the live limiter.

The limiter's balance counter is authoritative while it exists and moves only through
reservations, settlements and ``credit()``. Top-ups made by the CLI or by another gateway
process never pass through this process's admin API, so every ``interval`` seconds the
poller reads new ``credit_entries`` and calls ``credit()`` for each; the limiter applies an
entry id at most once, so delivering again (also from the admin API's own hook) is harmless.

Entry ids are taken when a transaction inserts, not when it commits: two top-ups of two
accounts can commit in the other order, and the poller may already have read past the id
that commits last. So an id it skipped (one it has not seen below the newest it has) is a
*hole*, looked up again on every poll until it appears (then delivered) or ``HOLE_TTL`` has
passed (an id given back by a rolled-back transaction never appears). A top-up's
transaction is short: far shorter than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from claudestore.limits.base import Limiter
from claudestore.storage.billing_models import CreditEntry
from claudestore.storage.db import Database

log = logging.getLogger("claudestore.credits")

HOLE_TTL = 600.0  # seconds an id skipped over is looked for
HOLES_KEPT = 1000  # at most this many holes (the newest ids) are looked for


class CreditPoller:
    def __init__(
        self, db: Database, limiter: Limiter, interval: float = 1.0, batch: int = 1000, hole_ttl: float = HOLE_TTL
    ) -> None:
        self._db = db
        self._hole_ttl = hole_ttl
        self._limiter = limiter
        self._interval = interval
        self._batch = batch
        self._last_id = 0
        self._holes: dict[int, float] = {}  # id skipped over -> when to stop looking (monotonic)
        self._task: asyncio.Task[None] | None = None

    async def poll(self) -> int:
        """Deliver every entry newer than the last one delivered, and those of the holes that
        have committed since; returns how many."""
        delivered = 0
        if self._holes:
            now = time.monotonic()
            for entry_id in [i for i, until in self._holes.items() if until <= now]:
                del self._holes[entry_id]
            if self._holes:
                rows = await self._read(CreditEntry.id.in_(sorted(self._holes)))
                for row in rows:
                    await self._deliver(row)
                    del self._holes[row[0]]
                delivered += len(rows)
        while True:
            rows = await self._read(CreditEntry.id > self._last_id, limit=self._batch)
            for row in rows:
                entry_id = row[0]
                if entry_id > self._last_id + 1:
                    self._skipped(self._last_id + 1, entry_id)
                await self._deliver(row)
                self._last_id = entry_id
                delivered += 1
            if len(rows) < self._batch:
                return delivered

    async def _read(self, where: Any, limit: int | None = None) -> Sequence[Any]:
        statement = (
            select(CreditEntry.id, CreditEntry.account_id, CreditEntry.amount_nanos, CreditEntry.created_at)
            .where(where)
            .order_by(CreditEntry.id)
            .limit(limit)
        )
        async with self._db.engine.connect() as conn:  # a plain query: no ORM session needed
            return (await conn.execute(statement)).all()

    async def _deliver(self, row: Any) -> None:
        entry_id, account_id, amount, created_at = row
        await self._limiter.credit(account_id, amount, entry_id, created_at.timestamp())

    def _skipped(self, low: int, high: int) -> None:
        """Ids ``low`` .. ``high - 1`` were skipped: holes (the newest HOLES_KEPT of them)."""
        until = time.monotonic() + self._hole_ttl
        for entry_id in range(max(low, high - HOLES_KEPT), high):
            self._holes[entry_id] = until
        if len(self._holes) > HOLES_KEPT:
            for entry_id in sorted(self._holes)[: len(self._holes) - HOLES_KEPT]:
                del self._holes[entry_id]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="credit-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception as exc:  # the database or Redis is away: try again next tick
                log.warning("delivering credit entries failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(self._interval)
