"""Model prices: USD per million tokens for a model id or an fnmatch pattern (``claude-*``).

``set_price`` is an upsert by model. When the cache prices are left out they follow
Anthropic's convention: a cache write costs 1.25 times input, a cache read 0.1 times input.
The gateway's price cache picks changes up within its TTL.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import fields
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.billing_models import ModelPrice

PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")
CACHE_WRITE_FACTOR = Decimal("1.25")
CACHE_READ_FACTOR = Decimal("0.1")
_MAX_PER_MTOK = Decimal(10**8) - 1  # Numeric(14, 6)


def _per_mtok(value: Any, field: str) -> Decimal:
    return fields.decimal(value, field, places=6, maximum=_MAX_PER_MTOK)


async def get_price(session: AsyncSession, model: str) -> ModelPrice:
    row = None
    if "\x00" not in model:  # no stored model holds NUL, and PostgreSQL cannot even compare one
        row = await session.scalar(select(ModelPrice).where(ModelPrice.model == model))
    if row is None:
        raise NotFound(f"No price for model {model!r}; list the prices to see which models have one.")
    return row


async def set_price(session: AsyncSession, model: str, data: Mapping[str, Any]) -> tuple[ModelPrice, bool]:
    """Create or replace the price of ``model``; returns ``(row, created)``.

    ``data``: ``input`` and ``output`` (required), ``cache_write`` and ``cache_read``
    (optional), each USD per million tokens as a number or a decimal string.
    """
    model = fields.text(model, "model", max_len=200)
    fields.reject_unknown(data, PRICE_FIELDS)
    for required in ("input", "output"):
        if data.get(required) is None:
            raise InvalidRequest(f"{required}: required (USD per million tokens)", param=required)
    input_price = _per_mtok(data["input"], "input")
    output_price = _per_mtok(data["output"], "output")
    cache_write = (
        _per_mtok(data["cache_write"], "cache_write")
        if data.get("cache_write") is not None
        else (input_price * CACHE_WRITE_FACTOR).quantize(Decimal("0.000001"))
    )
    cache_read = (
        _per_mtok(data["cache_read"], "cache_read")
        if data.get("cache_read") is not None
        else (input_price * CACHE_READ_FACTOR).quantize(Decimal("0.000001"))
    )
    if cache_write > _MAX_PER_MTOK:  # derived from a huge input price: would overflow the column
        raise InvalidRequest(
            f"cache_write: {CACHE_WRITE_FACTOR} x input is above {_MAX_PER_MTOK}; give cache_write",
            param="cache_write",
        )
    row = await session.scalar(select(ModelPrice).where(ModelPrice.model == model))
    created = row is None
    if row is None:
        row = ModelPrice(model=model)
        session.add(row)
    row.input_per_mtok = input_price
    row.output_per_mtok = output_price
    row.cache_write_per_mtok = cache_write
    row.cache_read_per_mtok = cache_read
    await session.flush()
    return row, created


async def list_prices(session: AsyncSession) -> list[ModelPrice]:
    return list(await session.scalars(select(ModelPrice).order_by(ModelPrice.model)))


async def delete_price(session: AsyncSession, model: str) -> ModelPrice:
    row = await get_price(session, model)
    await session.delete(row)
    await session.flush()
    return row
