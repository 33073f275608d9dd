"""Accounts, plans, prices, credit and the usage ledger.

Money is integer **nano-dollars** (1e-9 USD) everywhere it is stored or counted, so
balances and reservations are exact and can be adjusted atomically as integers (also
in Redis). A price of "$3 per million tokens" is 3000 nano-dollars per token. Prices
are kept as ``Numeric`` USD per million tokens, as operators write them.

The ledger (``usage_records``) is append-only: one row per request, unique by
``request_id``, so a batch written twice cannot bill twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from claudestore.storage.models import Base, CreatedAt, IntPK, utcnow

Nanos = int  # 1e-9 USD
PER_MTOK = Numeric(14, 6)  # USD per million tokens


class Account(Base):
    """A customer: one person or an organisation with members."""

    __tablename__ = "accounts"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="person")  # person | organisation
    email: Mapped[str | None] = mapped_column(String(320))
    balance_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[CreatedAt]
    disabled_at: Mapped[datetime | None]


class User(Base):
    """A person who can log in; belongs to accounts through memberships."""

    __tablename__ = "users"

    id: Mapped[IntPK]
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[CreatedAt]


class Membership(Base):
    __tablename__ = "memberships"

    id: Mapped[IntPK]
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="member")  # owner | admin | member
    created_at: Mapped[CreatedAt]


class Plan(Base):
    """What a subscription grants: limits, a quota per period, allowed models, a price."""

    __tablename__ = "plans"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(String(1000))
    price_usd: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))
    period: Mapped[str] = mapped_column(String(10), default="month")  # day | week | month | year
    rpm: Mapped[int | None] = mapped_column(Integer)  # requests per minute
    tpm: Mapped[int | None] = mapped_column(Integer)  # input + output tokens per minute
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    quota_tokens: Mapped[int | None] = mapped_column(BigInteger)  # per period
    included_credit_nanos: Mapped[int] = mapped_column(BigInteger, default=0)  # granted each period
    allowed_models: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["*"])  # fnmatch patterns
    price_multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4), default=Decimal(1))
    trial: Mapped[bool] = mapped_column(Boolean, default=False)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[CreatedAt]
    archived_at: Mapped[datetime | None]


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[IntPK]
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    renews: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | cancelled | expired
    created_at: Mapped[CreatedAt]
    cancelled_at: Mapped[datetime | None]


class ModelPrice(Base):
    """USD per million tokens for a model id (or an fnmatch pattern such as ``claude-*``)."""

    __tablename__ = "model_prices"

    id: Mapped[IntPK]
    model: Mapped[str] = mapped_column(String(200), unique=True)
    input_per_mtok: Mapped[Decimal] = mapped_column(PER_MTOK)
    output_per_mtok: Mapped[Decimal] = mapped_column(PER_MTOK)
    cache_write_per_mtok: Mapped[Decimal] = mapped_column(PER_MTOK)
    cache_read_per_mtok: Mapped[Decimal] = mapped_column(PER_MTOK)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RedeemCode(Base):
    """A one-time (or n-time) code that adds credit and/or starts a plan. Stored hashed."""

    __tablename__ = "redeem_codes"

    id: Mapped[IntPK]
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    credit_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    max_uses: Mapped[int] = mapped_column(Integer, default=1)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[CreatedAt]


class CreditEntry(Base):
    """Every change to a balance that is not usage: top-ups, redeemed codes, grants, adjustments."""

    __tablename__ = "credit_entries"

    id: Mapped[IntPK]
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    amount_nanos: Mapped[int] = mapped_column(BigInteger)  # positive adds credit
    kind: Mapped[str] = mapped_column(String(20))  # topup | redeem | grant | adjustment
    reference: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]


class UsageRecord(Base):
    """The ledger: exactly one row per generation request, in every outcome."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_account_created", "account_id", "created_at"),
        Index("ix_usage_records_key_created", "key_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime]
    key_id: Mapped[int | None] = mapped_column(Integer)
    account_id: Mapped[int | None] = mapped_column(Integer)
    endpoint: Mapped[str] = mapped_column(String(20))  # anthropic | openai
    model: Mapped[str | None] = mapped_column(String(200))
    upstream: Mapped[str | None] = mapped_column(String(100))
    upstream_model: Mapped[str | None] = mapped_column(String(200))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[int] = mapped_column(Integer)
    error_kind: Mapped[str | None] = mapped_column(String(50))
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    latency_ms: Mapped[float | None]
    ttft_ms: Mapped[float | None]
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    client_disconnected: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)

    def as_dict(self) -> dict[str, Any]:
        return {c.name: getattr(self, c.name) for c in self.__table__.columns}
