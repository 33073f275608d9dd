"""Plans: limits, a token quota per period, allowed models, a price, included credit.

Plans are referenced by subscriptions and redeem codes, so a referenced plan is
archived (hidden from new subscriptions, kept for history) instead of deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import fields, repository
from claudestore.accounts.fields import Conflict
from claudestore.accounts.money import PERIODS, credit_nanos
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.billing_models import Plan
from claudestore.storage.models import utcnow

#: Fields a plan can be created or updated with. Money: ``price_usd`` (what the plan
#: costs per period), ``included_credit_usd`` / ``included_credit_nanos`` (credit
#: granted on subscribing).
PLAN_FIELDS = (
    "name",
    "description",
    "price_usd",
    "period",
    "rpm",
    "tpm",
    "max_concurrency",
    "quota_tokens",
    "included_credit_usd",
    "included_credit_nanos",
    "allowed_models",
    "price_multiplier",
    "trial",
    "public",
)


def _apply(plan: Plan, data: Mapping[str, Any]) -> None:
    if "name" in data:
        plan.name = fields.text(data["name"], "name", max_len=100)
    if "description" in data:
        plan.description = fields.optional_text(data["description"], "description", max_len=1000)
    if "price_usd" in data:
        plan.price_usd = fields.decimal(data["price_usd"], "price_usd", places=2, maximum=Decimal(10**9))
    if "period" in data:
        plan.period = fields.choice(data["period"], "period", PERIODS)
    for name in ("rpm", "tpm", "max_concurrency"):
        if name in data:
            setattr(plan, name, fields.optional_limit(data[name], name))
    if "quota_tokens" in data:
        quota = data["quota_tokens"]
        plan.quota_tokens = (
            None
            if quota is None
            else fields.integer(quota, "quota_tokens", minimum=1, maximum=fields.MAX_INT64)
        )
    if "included_credit_usd" in data or "included_credit_nanos" in data:
        plan.included_credit_nanos = credit_nanos(
            dict(data), usd_field="included_credit_usd", nanos_field="included_credit_nanos"
        )
    if "allowed_models" in data:
        plan.allowed_models = fields.patterns(data["allowed_models"])
    if "price_multiplier" in data:
        multiplier = fields.decimal(
            data["price_multiplier"], "price_multiplier", places=4, maximum=Decimal(1000)
        )
        if multiplier == 0:
            raise InvalidRequest(
                "price_multiplier: must be above 0 (1 = list price)", param="price_multiplier"
            )
        plan.price_multiplier = multiplier
    for name in ("trial", "public"):
        if name in data:
            setattr(plan, name, fields.boolean(data[name], name))


async def _check_name_free(session: AsyncSession, name: str, plan_id: int | None) -> None:
    with session.no_autoflush:  # check before the changed name reaches the unique index
        other = await repository.plan_by_name(session, name)
    if other is not None and other.id != plan_id:
        raise Conflict(f"A plan named {name!r} already exists (id {other.id}).", param="name")


async def create_plan(session: AsyncSession, data: Mapping[str, Any]) -> Plan:
    """Create a plan from ``PLAN_FIELDS``; only ``name`` is required. Defaults: monthly,
    free, no limits, every model (``["*"]``), list price (multiplier 1), public."""
    fields.reject_unknown(data, PLAN_FIELDS)
    if "name" not in data:
        raise InvalidRequest("name: required", param="name")
    plan = Plan(
        price_usd=Decimal(0),
        period="month",
        included_credit_nanos=0,
        allowed_models=["*"],
        price_multiplier=Decimal(1),
        trial=False,
        public=True,
    )
    _apply(plan, data)
    await _check_name_free(session, plan.name, None)
    session.add(plan)
    await session.flush()
    return plan


async def get_plan(session: AsyncSession, ident: int | str) -> Plan:
    """A plan by id, or by exact name."""
    if isinstance(ident, int) or (ident.strip().isascii() and ident.strip().isdigit()):
        number = int(ident)
        # An id beyond the id column (INTEGER on PostgreSQL) names no plan; the database cannot bind it.
        plan = await session.get(Plan, number) if 1 <= number <= fields.MAX_INT32 else None
    elif "\x00" in ident:  # no plan's name holds NUL, and PostgreSQL cannot compare one
        plan = None
    else:
        plan = await repository.plan_by_name(session, ident.strip())
    if plan is None:
        raise NotFound(f"No plan {ident!r}; list the plans to see their ids and names.")
    return plan


async def list_plans(session: AsyncSession, *, include_archived: bool = False) -> list[Plan]:
    statement = select(Plan).order_by(Plan.id)
    if not include_archived:
        statement = statement.where(Plan.archived_at.is_(None))
    return list(await session.scalars(statement))


async def update_plan(session: AsyncSession, ident: int | str, data: Mapping[str, Any]) -> Plan:
    """Change any of ``PLAN_FIELDS``, or ``archived`` (false restores an archived plan).

    Changes apply to current subscribers too (within the gateway's policy cache TTL).
    """
    fields.reject_unknown(data, (*PLAN_FIELDS, "archived"))
    plan = await get_plan(session, ident)
    _apply(plan, data)
    if "archived" in data:
        archived = fields.boolean(data["archived"], "archived")
        plan.archived_at = (plan.archived_at or utcnow()) if archived else None
    await _check_name_free(session, plan.name, plan.id)
    await session.flush()
    return plan


async def delete_plan(session: AsyncSession, ident: int | str) -> tuple[Plan, Literal["deleted", "archived"]]:
    """Delete an unused plan; archive a plan that subscriptions or redeem codes refer to."""
    plan = await get_plan(session, ident)
    if await repository.plan_references(session, plan.id):
        if plan.archived_at is None:
            plan.archived_at = utcnow()
            await session.flush()
        return plan, "archived"
    await session.delete(plan)
    await session.flush()
    return plan, "deleted"


STARTER_PLAN: dict[str, Any] = {
    "name": "Free",
    "description": "Try the API at no cost: every model, modest limits, $1 of credit each month.",
    "price_usd": "0",
    "period": "month",
    "rpm": 10,
    "tpm": 20_000,
    "max_concurrency": 2,
    "quota_tokens": 200_000,
    "included_credit_usd": "1",
    "allowed_models": ["*"],
}


async def seed_starter_plan(session: AsyncSession) -> Plan | None:
    """Create the ``Free`` plan when there are no plans at all (a fresh install); else nothing."""
    if await session.scalar(select(func.count()).select_from(Plan)):
        return None
    return await create_plan(session, STARTER_PLAN)
