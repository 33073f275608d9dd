"""Prices, costs and reservations in exact nano-dollars; the price cache (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from claudestore.billing.pricing import (
    Price,
    PriceCache,
    PriceTable,
    decimal_cost_nanos,
    decimal_reserve_nanos,
    estimate_input_tokens,
)
from claudestore.core.response import Usage
from claudestore.storage.billing_models import ModelPrice
from claudestore.storage.db import Database

SONNET = ("claude-sonnet-4-5", "3", "15", "3.75", "0.30")


async def add_prices(db: Database, *rows: tuple[str, str, str, str, str]) -> None:
    async with db.session() as session:
        session.add_all(
            ModelPrice(
                model=model,
                input_per_mtok=Decimal(i),
                output_per_mtok=Decimal(o),
                cache_write_per_mtok=Decimal(cw),
                cache_read_per_mtok=Decimal(cr),
            )
            for model, i, o, cw, cr in rows
        )
        await session.commit()


def table(*rows: tuple[str, str, str, str, str]) -> PriceTable:
    return PriceTable(
        {m: Price(Decimal(i), Decimal(o), Decimal(cw), Decimal(cr)) for m, i, o, cw, cr in rows}
    )


async def test_cost_is_exact_from_database_prices(database: Database) -> None:
    await add_prices(database, SONNET, ("claude-*", "0.000333", "1", "1", "1"))
    prices = await PriceCache(database).get()
    assert prices.cost_nanos("claude-haiku", Usage(input_tokens=1, output_tokens=1)) == 1000  # 1000.333
    assert prices.cost_nanos("claude-haiku", Usage(input_tokens=1000)) == 333
    usage = Usage(input_tokens=1234, output_tokens=567, cache_write_tokens=100, cache_read_tokens=2000)
    # 1234*3 + 567*15 + 100*3.75 + 2000*0.30 = 13182 micro-dollars
    assert prices.lookup("claude-sonnet-4-5") == Price(
        Decimal(3), Decimal(15), Decimal("3.75"), Decimal("0.3")
    )
    assert prices.cost_nanos("claude-sonnet-4-5", usage) == 13_182_000
    assert prices.cost_nanos("claude-sonnet-4-5", usage, Decimal("1.2")) == 15_818_400
    assert prices.cost_nanos("claude-sonnet-4-5", usage, Decimal("0.3333")) == 4_393_561  # 4393560.6 -> up
    assert prices.cost_nanos("claude-sonnet-4-5", Usage()) == 0


def test_rounds_once_half_up() -> None:
    prices = table(("tiny", "0.0004", "0.0004", "0.0004", "0.0004"), ("half", "0.0005", "0", "0", "0"))
    one_each = Usage(input_tokens=1, output_tokens=1, cache_write_tokens=1, cache_read_tokens=1)
    # 4 x 0.4 nanos = 1.6 -> 2; rounding each kind first would give 0
    assert prices.cost_nanos("tiny", one_each) == 2
    assert prices.cost_nanos("tiny", Usage(input_tokens=1)) == 0  # 0.4 -> 0
    assert prices.cost_nanos("half", Usage(input_tokens=1)) == 1  # 0.5 -> 1 (half up, not to even)
    assert prices.cost_nanos("half", Usage(input_tokens=5)) == 3  # 2.5 -> 3
    assert prices.cost_nanos("half", Usage(input_tokens=1), Decimal("0.9999")) == 0  # 0.49995 -> 0


def test_pattern_lookup_precedence() -> None:
    prices = table(
        ("claude-*", "1", "1", "1", "1"),
        ("claude-sonnet-*", "2", "2", "2", "2"),
        ("claude-sonnet-4-5", "3", "3", "3", "3"),
        ("claude-sonnet-4-?", "4", "4", "4", "4"),
    )
    assert len(prices) == 4

    def price_of(model: str) -> Decimal | None:
        price = prices.lookup(model)
        return None if price is None else price.input

    assert price_of("claude-sonnet-4-5") == 3  # exact beats every pattern
    assert price_of("claude-sonnet-4-6") == 4  # longest matching pattern
    assert price_of("claude-sonnet-4-5-20250929") == 2
    assert price_of("claude-opus-4-1") == 1
    assert price_of("Claude-opus-4-1") is None  # case-sensitive on every platform
    assert price_of("gpt-4o") is None
    assert prices.cost_nanos("gpt-4o", Usage(input_tokens=10**6, output_tokens=10**6)) == 0
    assert prices.cost_nanos(None, Usage(input_tokens=10)) == 0
    assert prices.reserve_nanos("gpt-4o", 1000, 1000, Decimal(2)) == 0


def test_reserve_is_worst_case_rounded_up() -> None:
    prices = table(SONNET, ("micro", "0.000001", "0.000001", "0", "0"))
    # every input token at max(3, 3.75), 100 output tokens at 15
    assert prices.reserve_nanos("claude-sonnet-4-5", 1000, 100) == 3_750_000 + 1_500_000
    assert prices.reserve_nanos("claude-sonnet-4-5", 1000, 100, Decimal("1.0001")) == 5_250_525
    assert prices.reserve_nanos("claude-sonnet-4-5", 1, 0, Decimal("0.3333")) == 1250  # 1249.875 -> up
    assert prices.reserve_nanos("micro", 1, 0) == 1  # 0.001 nanos -> 1
    assert prices.cost_nanos("micro", Usage(input_tokens=1)) == 0
    worst = Usage(input_tokens=0, output_tokens=100, cache_write_tokens=1000)
    assert prices.reserve_nanos("claude-sonnet-4-5", 1000, 100) >= prices.cost_nanos(
        "claude-sonnet-4-5", worst
    )


def test_estimate_input_tokens_is_conservative() -> None:
    assert estimate_input_tokens(0) == 16
    assert estimate_input_tokens(-5) == 16
    assert estimate_input_tokens(3000) == 1016
    # ~4 bytes per token of English: the estimate must not fall below the real count
    text = "The quick brown fox jumps over the lazy dog. " * 200
    body = (
        f'{{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{{"role":"user","content":"{text}"}}]}}'
    )
    assert estimate_input_tokens(len(body.encode())) > len(text) // 4


async def test_price_cache_single_flight_ttl_and_invalidate(database: Database) -> None:
    await add_prices(database, SONNET)
    cache = PriceCache(database, ttl=60)
    loads = 0
    load = cache._load

    async def counting_load() -> PriceTable:
        nonlocal loads
        loads += 1
        return await load()

    cache._load = counting_load  # type: ignore[method-assign]
    tables = await asyncio.gather(*(cache.get() for _ in range(20)))
    assert loads == 1 and all(t is tables[0] for t in tables)

    async with database.session() as session:
        await session.execute(update(ModelPrice).values(input_per_mtok=Decimal(4)))
        await session.commit()
    assert (await cache.get()) is tables[0]  # within the ttl: the cached snapshot
    cache.invalidate()
    fresh = await cache.get()
    assert loads == 2 and fresh.lookup("claude-sonnet-4-5") == Price(
        Decimal(4), Decimal(15), Decimal("3.75"), Decimal("0.3")
    )

    cache.ttl = 0
    last = await cache.get()
    assert loads == 3

    async def broken() -> PriceTable:
        raise ConnectionRefusedError("down")

    cache._load = broken  # type: ignore[method-assign]
    assert await cache.get() is last  # a failed reload keeps serving the last table

    cold = PriceCache(database)
    cold._load = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionRefusedError):  # nothing to fall back on
        await cold.get()


# Prices as the database holds them (up to 9 decimal places, up to 80 million $/Mtok) and
# multipliers as plans do (up to 4 places), plus a few values outside that form.
_PRICE = st.decimals(min_value=0, max_value=80_000_000, places=9, allow_nan=False, allow_infinity=False)
_MULT = st.one_of(
    st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal(1), Decimal("1.0"), Decimal("1E+1"), Decimal("0.3333333333333333333333")]),
)
_TOKENS = st.integers(min_value=0, max_value=10**9)


@settings(max_examples=400, deadline=None)
@given(p=st.tuples(_PRICE, _PRICE, _PRICE, _PRICE), u=st.tuples(_TOKENS, _TOKENS, _TOKENS, _TOKENS), m=_MULT)
def test_integer_arithmetic_equals_decimal(
    p: tuple[Decimal, Decimal, Decimal, Decimal], u: tuple[int, int, int, int], m: Decimal
) -> None:
    price = Price(*p)
    prices = PriceTable({"m": price})
    usage = Usage(input_tokens=u[0], output_tokens=u[1], cache_write_tokens=u[2], cache_read_tokens=u[3])
    assert prices.cost_nanos("m", usage, m) == decimal_cost_nanos(price, usage, m)
    assert prices.reserve_nanos("m", u[0], u[1], m) == decimal_reserve_nanos(price, u[0], u[1], m)


def test_prices_outside_the_integer_form_take_the_decimal_path() -> None:
    usage = Usage(input_tokens=3, output_tokens=2)
    negative = Price(Decimal("-1.5"), Decimal("2"), Decimal("0"), Decimal("0"))
    prices = PriceTable({"neg": negative})
    assert negative.integers() is None
    assert prices.cost_nanos("neg", usage) == decimal_cost_nanos(negative, usage, Decimal(1)) == -500
    assert prices.cost_nanos("neg", usage, Decimal("-1")) == 500
