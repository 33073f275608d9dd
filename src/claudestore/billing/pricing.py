"""Model prices and what a request costs, in integer nano-dollars.

Prices are USD per million tokens (``model_prices``). One USD per million tokens is
one micro-dollar per token, i.e. 1000 nano-dollars per token, so::

    cost_nanos = round_half_up(sum(tokens_i * price_i) * 1000 * multiplier)

computed exactly and rounded to an integer **once**, at the end (never per token kind),
so the ledger is exact and reproducible. The arithmetic is integer arithmetic on each
price scaled by a power of ten (a price with ``s`` decimal places is an integer times
``10**-s``), which gives the same result as :class:`~decimal.Decimal` at a fraction of
the cost; anything outside that form (negative figures, non-finite values) takes the
:class:`~decimal.Decimal` path.

A price row's ``model`` is either an exact model id or an :mod:`fnmatch` pattern
(``claude-*``, ``claude-?-opus*``). :meth:`PriceTable.lookup` tries the exact id
first, then the patterns, longest (most specific) first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Context, Decimal
from fnmatch import fnmatchcase

from sqlalchemy import select

from claudestore.core.response import Usage
from claudestore.storage.billing_models import ModelPrice
from claudestore.storage.db import Database

log = logging.getLogger("claudestore.billing")

NANOS_PER_USD_PER_MTOK = Decimal(1000)  # $1/Mtok = 1 µUSD/token = 1000 nanos/token
ONE = Decimal(1)

# Wide enough that no product of stored prices, token counts and multipliers is ever inexact.
_EXACT = Context(prec=60)
_WILDCARDS = frozenset("*?[")
_LOOKUP_CACHE_MAX = 4096  # model names come from clients: keep the memo bounded
_SCALED_CACHE_MAX = 4096  # multipliers (one object per cached policy) in their integer form


def scaled(value: Decimal) -> tuple[int, int] | None:
    """``value`` as (integer, decimal places) when it is finite and not negative, else None."""
    if not value.is_finite() or value < 0:
        return None
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    places = max(0, -exponent)
    return int(value.scaleb(places, _EXACT)), places


# By identity: a Decimal's hash is computed anew on every call, and a plan's multiplier is one
# object per cached policy. The entry keeps its Decimal alive, so an id is never reused under it.
_MULTIPLIERS: dict[int, tuple[Decimal, tuple[int, int] | None]] = {}


def _scaled_multiplier(multiplier: Decimal) -> tuple[int, int] | None:
    entry = _MULTIPLIERS.get(id(multiplier))
    if entry is not None and entry[0] is multiplier:
        return entry[1]
    found = scaled(Decimal(multiplier))
    if len(_MULTIPLIERS) >= _SCALED_CACHE_MAX:
        _MULTIPLIERS.clear()
    _MULTIPLIERS[id(multiplier)] = (multiplier, found)
    return found


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens for each token kind."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal

    def integers(self) -> tuple[int, int, int, int, int] | None:
        """(input, output, cache_write, cache_read, 10**places): each price in nanos per token
        times 10**places, all integers; None when a price is negative or not finite."""
        parts = [
            scaled(_EXACT.multiply(d, NANOS_PER_USD_PER_MTOK))
            for d in (self.input, self.output, self.cache_write, self.cache_read)
        ]
        if any(p is None for p in parts):
            return None
        places = max(p[1] for p in parts if p is not None)
        i, o, w, r = (p[0] * 10 ** (places - p[1]) for p in parts if p is not None)
        return i, o, w, r, 10**places

    @classmethod
    def from_row(cls, row: ModelPrice) -> Price:
        return cls(
            input=Decimal(row.input_per_mtok),
            output=Decimal(row.output_per_mtok),
            cache_write=Decimal(row.cache_write_per_mtok),
            cache_read=Decimal(row.cache_read_per_mtok),
        )


def _round(value: Decimal, rounding: str) -> int:
    return int(value.quantize(ONE, rounding=rounding, context=_EXACT))


class PriceTable:
    """An immutable snapshot of ``model_prices``: exact ids plus fnmatch patterns."""

    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        prices = prices or {}
        self._exact = {m: p for m, p in prices.items() if not _WILDCARDS.intersection(m)}
        # Most specific first: the longest pattern wins; ties break by name for determinism.
        self._patterns = sorted(
            ((m, p) for m, p in prices.items() if _WILDCARDS.intersection(m)),
            key=lambda item: (-len(item[0]), item[0]),
        )
        self._memo: dict[str, Price | None] = {}
        self._integers = {id(p): p.integers() for p in prices.values()}  # the prices outlive the ids

    @classmethod
    def from_rows(cls, rows: Iterable[ModelPrice]) -> PriceTable:
        return cls({row.model: Price.from_row(row) for row in rows})

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)

    def lookup(self, model: str | None) -> Price | None:
        """The price of ``model``: its exact row, else the longest matching pattern, else ``None``."""
        if model is None:
            return None
        price = self._exact.get(model)
        if price is not None:
            return price
        try:
            return self._memo[model]
        except KeyError:
            pass
        found = next((p for pattern, p in self._patterns if fnmatchcase(model, pattern)), None)
        if len(self._memo) < _LOOKUP_CACHE_MAX:
            self._memo[model] = found
        return found

    def cost_nanos(self, model: str | None, usage: Usage, multiplier: Decimal = ONE) -> int:
        """What ``usage`` of ``model`` costs, in nano-dollars (0 when the model has no price)."""
        price = self.lookup(model)
        if price is None:
            return 0
        ints, mult = self._integers.get(id(price)), _scaled_multiplier(multiplier)
        if ints is not None and mult is not None:
            i, o, w, r, scale = ints
            n = (
                usage.input_tokens * i
                + usage.output_tokens * o
                + usage.cache_write_tokens * w
                + usage.cache_read_tokens * r
            ) * mult[0]
            if n >= 0:
                d = scale * 10 ** mult[1]
                return (2 * n + d) // (2 * d)  # half up
        return decimal_cost_nanos(price, usage, multiplier)

    def reserve_nanos(
        self, model: str | None, input_tokens_estimate: int, max_tokens: int, multiplier: Decimal = ONE
    ) -> int:
        """The most a request can cost: every input token at the dearer of the input and
        cache-write prices, plus ``max_tokens`` of output; rounded up. 0 without a price."""
        price = self.lookup(model)
        if price is None:
            return 0
        ints, mult = self._integers.get(id(price)), _scaled_multiplier(multiplier)
        if ints is not None and mult is not None:
            i, o, w, _, scale = ints
            n = (input_tokens_estimate * max(i, w) + max_tokens * o) * mult[0]
            if n >= 0:
                return -(-n // (scale * 10 ** mult[1]))  # ceiling
        return decimal_reserve_nanos(price, input_tokens_estimate, max_tokens, multiplier)


def decimal_cost_nanos(price: Price, usage: Usage, multiplier: Decimal) -> int:
    """``PriceTable.cost_nanos`` in :class:`~decimal.Decimal` (the reference; any input)."""
    c = _EXACT
    total = c.add(
        c.add(c.multiply(usage.input_tokens, price.input), c.multiply(usage.output_tokens, price.output)),
        c.add(
            c.multiply(usage.cache_write_tokens, price.cache_write),
            c.multiply(usage.cache_read_tokens, price.cache_read),
        ),
    )
    return _round(c.multiply(c.multiply(total, NANOS_PER_USD_PER_MTOK), Decimal(multiplier)), ROUND_HALF_UP)


def decimal_reserve_nanos(
    price: Price, input_tokens_estimate: int, max_tokens: int, multiplier: Decimal
) -> int:
    """``PriceTable.reserve_nanos`` in :class:`~decimal.Decimal` (the reference; any input)."""
    c = _EXACT
    total = c.add(
        c.multiply(input_tokens_estimate, max(price.input, price.cache_write)),
        c.multiply(max_tokens, price.output),
    )
    return _round(c.multiply(c.multiply(total, NANOS_PER_USD_PER_MTOK), Decimal(multiplier)), ROUND_CEILING)


def estimate_input_tokens(body_bytes_len: int) -> int:
    """A conservative guess of a request's input tokens from its body size, for reservations.

    Claude's tokenizer averages 3.5-4 bytes of English text per token, and a JSON body
    adds keys, quotes and escapes that are not tokens, so ``bytes // 3 + 16`` over-counts
    text, code and most scripts (a CJK character is 3 UTF-8 bytes and usually at most one
    token). It is *not* a bound for images or documents, which are priced by pixels and
    pages rather than bytes; the reservation is settled against the upstream's real usage
    anyway. Never use this for billing.
    """
    return max(0, body_bytes_len) // 3 + 16


class PriceCache:
    """The current :class:`PriceTable`, reloaded from the database at most every ``ttl`` seconds.

    Concurrent callers share one reload (single flight). If a reload fails, the last
    table keeps being served (and the reload is retried after ``ttl``); only the very
    first load propagates its error.
    """

    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._table: PriceTable | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return time.monotonic() - self._loaded_at < self.ttl

    async def get(self) -> PriceTable:
        table = self._table
        if table is not None and self._fresh():
            return table
        async with self._lock:
            if self._table is not None and self._fresh():  # another caller just reloaded
                return self._table
            try:
                table = await self._load()
            except Exception as exc:
                if self._table is None:
                    raise
                log.warning(
                    "reloading model prices failed (%s); keeping the previous table", type(exc).__name__
                )
                self._loaded_at = time.monotonic()
                return self._table
            self._table, self._loaded_at = table, time.monotonic()
            return table

    def invalidate(self) -> None:
        """Make the next :meth:`get` reload (e.g. after an admin changed a price)."""
        self._loaded_at = float("-inf")

    async def _load(self) -> PriceTable:
        async with self.db.session() as session:
            rows = (await session.scalars(select(ModelPrice))).all()
        return PriceTable.from_rows(rows)
