"""Rows → JSON objects. Money is given twice: exact integer ``*_nanos`` and a ``*_usd``
decimal string; prices and multipliers are decimal strings. Key and code hashes are
never part of any output."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from claudestore.accounts.accounts import Member
from claudestore.accounts.money import format_usd
from claudestore.accounts.usage import UsageRow
from claudestore.storage.billing_models import (
    Account,
    CreditEntry,
    ModelPrice,
    Plan,
    RedeemCode,
    Subscription,
    UsageRecord,
)
from claudestore.storage.models import ApiKey, utcnow


def decimal(value: Decimal) -> str:
    """Fixed-point text: ``"1000"``, never ``"1E+3"`` (as a price given as "1e3" would print)."""
    return format(value, "f")


def money(nanos: int) -> dict[str, Any]:
    return {"nanos": nanos, "usd": format_usd(nanos)}


def account(row: Account) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": "account",
        "name": row.name,
        "kind": row.kind,
        "email": row.email,
        "balance": money(row.balance_nanos),
        "created_at": row.created_at,
        "disabled_at": row.disabled_at,
        "status": "disabled" if row.disabled_at else "active",
    }


def plan(row: Plan) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": "plan",
        "name": row.name,
        "description": row.description,
        "price_usd": decimal(row.price_usd),
        "period": row.period,
        "rpm": row.rpm,
        "tpm": row.tpm,
        "max_concurrency": row.max_concurrency,
        "quota_tokens": row.quota_tokens,
        "included_credit": money(row.included_credit_nanos),
        "allowed_models": list(row.allowed_models),
        "price_multiplier": decimal(row.price_multiplier),
        "trial": row.trial,
        "public": row.public,
        "created_at": row.created_at,
        "archived_at": row.archived_at,
    }


def subscription(
    row: Subscription, plan_row: Plan | None = None, now: datetime | None = None
) -> dict[str, Any]:
    now = now or utcnow()
    body: dict[str, Any] = {
        "id": row.id,
        "type": "subscription",
        "account_id": row.account_id,
        "plan_id": row.plan_id,
        "status": row.status,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "in_period": row.status == "active" and row.period_start <= now < row.period_end,
        "renews": row.renews,
        "created_at": row.created_at,
        "cancelled_at": row.cancelled_at,
    }
    if plan_row is not None:
        body["plan_name"] = plan_row.name
    return body


def key(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": "api_key",
        "name": row.name,
        "prefix": row.prefix,
        "account_id": row.account_id,
        "status": row.status(),
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "allowed_models": row.allowed_models,
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
        "concurrency_limit": row.concurrency_limit,
    }


def created_key(raw: str, row: ApiKey) -> dict[str, Any]:
    return {**key(row), "key": raw, "note": "Store this key now: it is shown only once."}


def member(row: Member) -> dict[str, Any]:
    return {
        "user_id": row.user.id,
        "type": "member",
        "email": row.user.email,
        "name": row.user.name,
        "role": row.membership.role,
        "added_at": row.membership.created_at,
    }


def credit_entry(row: CreditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": "credit_entry",
        "account_id": row.account_id,
        "kind": row.kind,
        "amount": money(row.amount_nanos),
        "reference": row.reference,
        "created_at": row.created_at,
    }


def price(row: ModelPrice) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": "model_price",
        "model": row.model,
        "input_per_mtok": decimal(row.input_per_mtok),
        "output_per_mtok": decimal(row.output_per_mtok),
        "cache_write_per_mtok": decimal(row.cache_write_per_mtok),
        "cache_read_per_mtok": decimal(row.cache_read_per_mtok),
        "updated_at": row.updated_at,
    }


def code(row: RedeemCode, raw: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id,
        "type": "redeem_code",
        "prefix": row.prefix,
        "credit": money(row.credit_nanos),
        "plan_id": row.plan_id,
        "max_uses": row.max_uses,
        "uses": row.uses,
        "expires_at": row.expires_at,
        "created_at": row.created_at,
    }
    if raw is not None:
        body["code"] = raw
    return body


def usage_row(row: UsageRow, group_by: str | None) -> dict[str, Any]:
    body = row.as_dict()
    body["cost_usd"] = format_usd(row.cost_nanos)
    group = body.pop("group")
    if group_by is not None:
        body = {{"key": "key_id", "account": "account_id"}.get(group_by, group_by): group, **body}
    return body


#: Columns of a ledger row a customer sees (no upstream names, no retry counts).
CUSTOMER_RECORD_FIELDS = (
    "id",
    "request_id",
    "created_at",
    "key_id",
    "endpoint",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "cost_nanos",
    "status",
    "error_kind",
    "stop_reason",
    "latency_ms",
    "ttft_ms",
    "streamed",
)


def usage_record(row: UsageRecord, *, customer: bool) -> dict[str, Any]:
    body = row.as_dict()
    if customer:
        body = {name: body[name] for name in CUSTOMER_RECORD_FIELDS}
    body["cost_usd"] = format_usd(row.cost_nanos)
    return body
