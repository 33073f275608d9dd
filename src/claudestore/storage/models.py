"""ORM models: the declarative base and its tables.

New tables subclass :class:`Base` and use the annotated helpers, e.g.::

    class Account(Base):
        __tablename__ = "accounts"
        id: Mapped[IntPK]
        created_at: Mapped[CreatedAt]
        closed_at: Mapped[datetime | None]

Every ``datetime`` column is a :class:`UTCDateTime`: aware UTC in, aware UTC out,
on every backend. Relationships must be declared with ``lazy="raise_on_sql"`` so
that no async code path can trigger an implicit (and illegal) lazy load. Each
schema change needs a migration in ``storage/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from sqlalchemy import JSON, DateTime, Dialect, ForeignKey, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp.

    Naive datetimes are rejected on the way in. SQLite has no time zone storage,
    so values are stored as UTC there and re-tagged as UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


IntPK = Annotated[int, mapped_column(primary_key=True)]
CreatedAt = Annotated[datetime, mapped_column(default=utcnow)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


KeyStatus = Literal["active", "revoked", "expired"]


class ApiKey(Base):
    """A gateway API key. Only the HMAC of the key is stored (see ``storage.keys``)."""

    __tablename__ = "api_keys"

    id: Mapped[IntPK]
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[CreatedAt]
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Accounts and limits (migration 0002). A key without an account is an operator key:
    # no plan, no limits, no balance (keys made by ``claudestore keys create`` without --account).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)  # fnmatch patterns; None = the plan's
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)

    def status(self, now: datetime | None = None) -> KeyStatus:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"

    def __repr__(self) -> str:  # never include key_hash
        return f"ApiKey(id={self.id!r}, prefix={self.prefix!r}, name={self.name!r})"
