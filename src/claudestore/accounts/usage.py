"""Read-only queries over the usage ledger (``usage_records``).

Totals of requests, tokens and cost, optionally grouped by ``day`` (UTC, as
``YYYY-MM-DD``), ``model``, ``key`` or ``account``, filtered by account, key, model and
a time range; and the recent requests, newest first, paged by id. The day grouping is
a per-dialect expression (``date()`` on SQLite, where times are stored as UTC text;
``to_char(created_at AT TIME ZONE 'UTC')`` on PostgreSQL), so both answer the same.

These are plain SELECTs with no business rules, so this module is its own repository.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import fields
from claudestore.core.errors import InvalidRequest
from claudestore.storage.billing_models import UsageRecord

GROUPS = ("day", "model", "key", "account")
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: str | int | None  # the day, model, key id or account id; None for the overall total
    requests: int
    errors: int  # requests that ended with a status >= 400
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_nanos: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


def time_range(start: Any, end: Any) -> tuple[datetime | None, datetime | None]:
    """``from`` / ``to`` parameters: ISO dates or times. A date-only ``to`` includes that whole day.

    The result is a half-open range ``[start, end)``.
    """
    lower = fields.timestamp(start, "from") if start not in (None, "") else None
    upper = None
    if end not in (None, ""):
        upper = fields.timestamp(end, "to")
        if isinstance(end, str) and len(end.strip()) == 10:
            # the whole day; the last day of the calendar runs to the largest representable time
            last = datetime.max.replace(tzinfo=UTC)
            upper = upper + timedelta(days=1) if last - upper >= timedelta(days=1) else last
    if lower and upper and upper <= lower:
        raise InvalidRequest("to: must be after from", param="to")
    return lower, upper


def _day(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", UsageRecord.created_at), "YYYY-MM-DD")
    return func.date(UsageRecord.created_at)


def _filtered(
    statement: Select[Any],
    account_id: int | None,
    key_id: int | None,
    model: str | None,
    start: datetime | None,
    end: datetime | None,
) -> Select[Any]:
    if account_id is not None:
        statement = statement.where(UsageRecord.account_id == account_id)
    if key_id is not None:
        statement = statement.where(UsageRecord.key_id == key_id)
    if model is not None:
        statement = statement.where(UsageRecord.model == model)
    if start is not None:
        statement = statement.where(UsageRecord.created_at >= start)
    if end is not None:
        statement = statement.where(UsageRecord.created_at < end)
    return statement


async def summarize(
    session: AsyncSession,
    *,
    account_id: int | None = None,
    key_id: int | None = None,
    model: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: str | None = None,
) -> list[UsageRow]:
    """Totals per group (ordered by group), or one overall row when ``group_by`` is None."""
    group: ColumnElement[Any] | None = None
    if group_by == "day":
        group = _day(session.get_bind().dialect.name)
    elif group_by is not None:
        fields.choice(group_by, "group_by", GROUPS)
        group = {"model": UsageRecord.model, "key": UsageRecord.key_id, "account": UsageRecord.account_id}[
            group_by
        ]
    columns = [
        func.count(),
        func.coalesce(func.sum(case((UsageRecord.status >= 400, 1), else_=0)), 0),
        *(
            func.coalesce(func.sum(column), 0)
            for column in (
                UsageRecord.input_tokens,
                UsageRecord.output_tokens,
                UsageRecord.cache_write_tokens,
                UsageRecord.cache_read_tokens,
                UsageRecord.cost_nanos,
            )
        ),
    ]
    if group is None:
        statement = select(*columns)
    else:
        labelled = group.label("grp")
        statement = select(labelled, *columns).group_by(labelled).order_by(labelled)
    statement = _filtered(statement, account_id, key_id, model, start, end)
    rows = (await session.execute(statement)).all()
    result = []
    for row in rows:
        values = tuple(row) if group is not None else (None, *row)
        result.append(UsageRow(values[0], *(int(v or 0) for v in values[1:])))
    return result


async def recent(
    session: AsyncSession,
    *,
    account_id: int | None = None,
    key_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[UsageRecord]:
    """Ledger rows, newest first; pass the last row's id as ``before_id`` for the next page."""
    limit = fields.integer(limit, "limit", minimum=1, maximum=MAX_PAGE)
    statement = _filtered(select(UsageRecord), account_id, key_id, None, None, None)
    if before_id is not None:
        statement = statement.where(UsageRecord.id < before_id)
    return list(await session.scalars(statement.order_by(UsageRecord.id.desc()).limit(limit)))


async def tokens_since(session: AsyncSession, account_id: int, start: datetime) -> int:
    """Tokens of every kind the account used since ``start`` (what a plan's quota counts)."""
    total = await session.scalar(
        select(
            func.coalesce(
                func.sum(
                    UsageRecord.input_tokens
                    + UsageRecord.output_tokens
                    + UsageRecord.cache_write_tokens
                    + UsageRecord.cache_read_tokens
                ),
                0,
            )
        ).where(UsageRecord.account_id == account_id, UsageRecord.created_at >= start)
    )
    return int(total or 0)
