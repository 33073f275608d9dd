"""What the store sells, for the pages: public plans with the models each one allows."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase

from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts.plans import list_plans
from claudestore.config import Config
from claudestore.storage.billing_models import Plan


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Offer:
    plan: Plan
    models: list[ModelEntry]

    @property
    def free(self) -> bool:
        return Decimal(self.plan.price_usd) == 0


def models(config: Config) -> list[ModelEntry]:
    return [ModelEntry(m.id, m.display_name or m.id) for m in config.models]


def allowed(patterns: list[str] | None, catalog: list[ModelEntry]) -> list[ModelEntry]:
    if patterns is None:
        return catalog
    return [m for m in catalog if any(fnmatchcase(m.id, p) for p in patterns)]


async def offers(session: AsyncSession, config: Config) -> list[Offer]:
    """Public, unarchived plans, cheapest first."""
    catalog = models(config)
    plans = [p for p in await list_plans(session) if p.public and p.archived_at is None]
    plans.sort(key=lambda p: (Decimal(p.price_usd), p.id))
    return [Offer(p, allowed(p.allowed_models, catalog)) for p in plans]
