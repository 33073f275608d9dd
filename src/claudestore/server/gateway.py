"""The process-wide state of a running gateway, built from configuration at start-up."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from dataclasses import dataclass, field

from claudestore.admission.accounting import Accounting, LivePrices
from claudestore.admission.credits import CreditPoller
from claudestore.admission.policy import PolicyCache
from claudestore.billing.ledger import LedgerWriter
from claudestore.config import Config
from claudestore.limits.factory import make_limiter
from claudestore.observability.logs import log_outcome
from claudestore.observability.metrics import Metrics
from claudestore.providers.base import Provider
from claudestore.providers.http import HTTPClient
from claudestore.providers.registry import build_providers, make_client
from claudestore.routing.router import Router
from claudestore.server.http import Request
from claudestore.server.outcome import Outcome, OutcomeListener
from claudestore.storage.auth import KeyAuthenticator
from claudestore.storage.db import Database
from claudestore.storage.keys import pepper_is_default
from claudestore.storage.migrate import migrate

# The cyclic garbage collector's young-generation threshold. Python's default, 700 net
# allocations, is reached every few dozen requests under load; each collection then moves
# the objects of the requests in flight to an older generation, where they die, and full
# collections (which scan the whole heap, tens of milliseconds) follow every few seconds:
# measured, ~40 µs of CPU per request and 80 ms pauses. At 10,000 the young generation is
# collected every few thousand requests and full collections become rare. Requests make
# almost no cyclic garbage, so memory does not grow for it.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Raise the young-generation threshold to ``GC_YOUNG_THRESHOLD`` (never lower it)."""
    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def freeze_startup_heap() -> None:
    """Move every object alive after start-up (modules, config, caches: ~10^5 objects) out of
    the collector's reach with ``gc.freeze()``: they live as long as the process, yet each full
    collection scanned them all, a pause of ~30 ms that hit a request every few seconds in the
    first minutes under load (bench: one-connection p99.9 27-32 ms before, steady after)."""
    gc.collect()
    gc.freeze()


@dataclass
class Gateway:
    config: Config
    db: Database
    auth: KeyAuthenticator
    session: HTTPClient
    providers: dict[str, Provider]
    router: Router
    accounting: Accounting
    credits: CreditPoller
    listeners: list[OutcomeListener] = field(default_factory=list)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("claudestore"))
    metrics: Metrics = field(default_factory=Metrics)
    # Graceful shutdown: ``draining`` from SIGTERM on (new requests refused, /readyz 503); the
    # generation tasks still running at the drain deadline are cancelled and end with an error.
    draining: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    drained: set[asyncio.Task[None]] = field(default_factory=set)  # cancelled by the drain deadline
    _drain_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, config: Config, *, run_migrations: bool | None = None) -> Gateway:
        if run_migrations is None:
            run_migrations = os.environ.get("CLAUDESTORE_SKIP_MIGRATIONS") != "1"
        if run_migrations:
            await migrate(config.database.url)
        tune_gc()
        db = Database(config.database.url)
        auth = KeyAuthenticator(db)
        auth.start()
        if pepper_is_default():
            logging.getLogger("claudestore").warning(
                "CLAUDESTORE_KEY_PEPPER is not set: API key hashes use the built-in pepper. "
                "Set a secret pepper before issuing production keys."
            )
        session = make_client(config.upstreams)
        providers = build_providers(config.upstreams, session)
        ledger = LedgerWriter(db, flush_interval=config.accounting.ledger_flush_interval)
        ledger.start()
        limiter = make_limiter(config.limits.redis_url, config.limits.redis_prefix)
        credits = CreditPoller(db, limiter)
        credits.start()
        accounting = Accounting(
            limiter,
            PolicyCache(db, ttl=config.accounting.policy_ttl, live_quota=limiter.quota_used),
            LivePrices(db, ttl=config.accounting.policy_ttl),
            ledger,
        )
        gw = cls(config, db, auth, session, providers, Router(config, providers), accounting, credits)
        gw.listeners.append(gw.metrics.observe)
        gw.listeners.append(log_outcome)
        freeze_startup_heap()
        return gw

    def begin_drain(self, seconds: float | None = None) -> None:
        """Stop taking generation requests; end the ones still running after ``seconds``
        (default ``server.drain_seconds``). Idempotent."""
        if self.draining:
            return
        self.draining = self.metrics.draining = True
        seconds = self.config.server.drain_seconds if seconds is None else seconds
        self.log.warning(
            "draining: %d requests in flight, ending any left in %.1f s", len(self.tasks), seconds
        )
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(seconds))

    async def _drain(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.tasks:
            self.log.warning("drain deadline: ending %d requests still in flight", len(self.tasks))
            for task in list(self.tasks):
                self.drained.add(task)  # tells the request its cancellation is the drain's
                task.cancel()

    async def wait_idle(self, limit: float) -> None:
        """Wait (at most ``limit`` seconds) until no generation request is in flight here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while (self.tasks or self.metrics.requests_in_flight) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # polled at shutdown only: no event on the request path

    async def stop(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
        # Requests ended at the drain deadline settle within moments: their ledger rows must be
        # handed to the writer before it flushes for the last time.
        await self.wait_idle(5.0)
        await self.credits.stop()
        await self.accounting.ledger.stop()
        await self.accounting.limiter.close()
        await self.auth.stop()
        await self.session.close()
        await self.db.close()

    def response_headers(self, req: Request) -> dict[str, str]:
        return {"request-id": req.request_id, "x-request-id": req.request_id}

    def finish(self, outcome: Outcome) -> None:
        for listener in self.listeners:
            try:
                listener(outcome)
            except Exception:
                self.log.exception("outcome listener failed for %s", outcome.request_id)
