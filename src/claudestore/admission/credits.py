"""Deliver credit entries written by anyone (admin API, CLI, another process) to the live limiter.

The limiter's balance counter is authoritative while it exists and moves only through
reservations, settlements and ``credit()``. Top-ups made by the CLI or by another gateway
process never pass through this process's admin API, so every ``interval`` seconds the
poller reads new ``credit_entries`` and calls ``credit()`` for each; the limiter applies an
entry id at most once, so delivering again (also from the admin API's own hook) is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import select

from claudestore.limits.base import Limiter
from claudestore.storage.billing_models import CreditEntry
from claudestore.storage.db import Database

log = logging.getLogger("claudestore.credits")


class CreditPoller:
    def __init__(self, db: Database, limiter: Limiter, interval: float = 1.0, batch: int = 1000) -> None:
        self._db = db
        self._limiter = limiter
        self._interval = interval
        self._batch = batch
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None

    async def poll(self) -> int:
        """Deliver every entry newer than the last one delivered; returns how many."""
        delivered = 0
        while True:
            async with self._db.engine.connect() as conn:  # a plain query: no ORM session needed
                rows = (
                    await conn.execute(
                        select(CreditEntry.id, CreditEntry.account_id, CreditEntry.amount_nanos)
                        .where(CreditEntry.id > self._last_id)
                        .order_by(CreditEntry.id)
                        .limit(self._batch)
                    )
                ).all()
            for entry_id, account_id, amount in rows:
                await self._limiter.credit(account_id, amount, entry_id)
                self._last_id = entry_id
                delivered += 1
            if len(rows) < self._batch:
                return delivered

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
