"""The process-wide state of a running gateway, built from configuration at start-up."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import aiohttp

from claudestore.admission.accounting import Accounting
from claudestore.admission.credits import CreditPoller
from claudestore.admission.policy import PolicyCache
from claudestore.billing.ledger import LedgerWriter
from claudestore.billing.pricing import PriceCache
from claudestore.config import Config
from claudestore.limits.factory import make_limiter
from claudestore.providers.base import Provider
from claudestore.providers.registry import build_providers, make_session
from claudestore.routing.router import Router
from claudestore.server.http import Request
from claudestore.server.outcome import Outcome, OutcomeListener
from claudestore.storage.auth import KeyAuthenticator
from claudestore.storage.db import Database
from claudestore.storage.keys import pepper_is_default
from claudestore.storage.migrate import migrate


@dataclass
class Gateway:
    config: Config
    db: Database
    auth: KeyAuthenticator
    session: aiohttp.ClientSession
    providers: dict[str, Provider]
    router: Router
    accounting: Accounting
    credits: CreditPoller
    listeners: list[OutcomeListener] = field(default_factory=list)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("claudestore"))

    @classmethod
    async def start(cls, config: Config, *, run_migrations: bool | None = None) -> Gateway:
        if run_migrations is None:
            run_migrations = os.environ.get("CLAUDESTORE_SKIP_MIGRATIONS") != "1"
        if run_migrations:
            await migrate(config.database.url)
        db = Database(config.database.url)
        auth = KeyAuthenticator(db)
        auth.start()
        if pepper_is_default():
            logging.getLogger("claudestore").warning(
                "CLAUDESTORE_KEY_PEPPER is not set: API key hashes use the built-in pepper. "
                "Set a secret pepper before issuing production keys."
            )
        session = make_session(config.upstreams)
        providers = build_providers(config.upstreams, session)
        ledger = LedgerWriter(db, flush_interval=config.accounting.ledger_flush_interval)
        ledger.start()
        limiter = make_limiter(config.limits.redis_url, config.limits.redis_prefix)
        credits = CreditPoller(db, limiter)
        credits.start()
        accounting = Accounting(
            limiter,
            PolicyCache(db, ttl=config.accounting.policy_ttl),
            PriceCache(db, ttl=config.accounting.policy_ttl),
            ledger,
        )
        return cls(config, db, auth, session, providers, Router(config, providers), accounting, credits)

    async def stop(self) -> None:
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
