"""Benchmark of the metering back end (not a test).

Run: ``.venv/bin/python bench/bench_ledger.py [--rows N] [--batch B] [--no-postgres]``

- request path: the cost per call of ``LedgerWriter.record`` (and, for context, of
  ``LedgerRow.from_outcome`` and ``PriceTable.cost_nanos``, which the request path also pays);
- ledger throughput on SQLite (a temp file) and PostgreSQL (a temp database on
  ``$CLAUDESTORE_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``):
  * ``flush``: N rows queued, then one ``flush()`` (``max_batch`` rows per transaction);
  * ``sustained``: the background loop running while a producer records N rows as fast as it
    can (yielding to the event loop every 100 rows); rows/s from the first record to the
    last commit.

Rows are spread over 100 accounts, so each transaction also runs up to 100 balance updates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from claudestore.billing.ledger import LedgerRow, LedgerWriter
from claudestore.billing.pricing import Price, PriceTable
from claudestore.core.response import Usage
from claudestore.server.outcome import Outcome
from claudestore.storage.billing_models import Account
from claudestore.storage.db import Database
from claudestore.storage.migrate import migrate

ACCOUNTS = 100


def make_rows(n: int, prefix: str) -> list[LedgerRow]:
    rng = random.Random(1)
    now = datetime.now(UTC)
    return [
        LedgerRow(
            f"{prefix}{i:09d}",
            now,
            rng.randrange(1, 1000),
            rng.randrange(1, ACCOUNTS + 1),
            "anthropic",
            model="claude-sonnet-4-5",
            upstream="anthropic",
            upstream_model="claude-sonnet-4-5-20250929",
            input_tokens=rng.randrange(10, 5000),
            output_tokens=rng.randrange(1, 2000),
            cost_nanos=rng.randrange(1, 10**7),
            stop_reason="end_turn",
            latency_ms=1234.5,
            ttft_ms=321.0,
            streamed=True,
        )
        for i in range(n)
    ]


def per_call_ns(loop: Callable[[], None], calls: int) -> float:
    start = time.perf_counter_ns()
    loop()
    return (time.perf_counter_ns() - start) / calls


def bench_request_path(calls: int) -> None:
    row = make_rows(1, "r")[0]
    writer = LedgerWriter(Database("sqlite+aiosqlite:///:memory:"), max_pending=calls + 1)
    record = writer.record

    def loop_record() -> None:
        for _ in range(calls):
            record(row)

    def loop_empty() -> None:
        for _ in range(calls):
            pass

    base = per_call_ns(loop_empty, calls)
    rec = per_call_ns(loop_record, calls)
    assert writer.pending == calls
    print(f"record():               {rec / 1000:.3f} µs/call ({(rec - base) / 1000:.3f} µs net of the loop)")

    outcome = Outcome("req_0123456789abcdef", "anthropic", key_id=1, model="claude-sonnet-4-5")
    outcome.usage = Usage(1234, 567, 100, 2000)
    outcome.finished_at = outcome.started + 1
    n = calls // 10
    start = time.perf_counter_ns()
    for _ in range(n):
        LedgerRow.from_outcome(outcome, account_id=1, cost_nanos=1)
    print(f"LedgerRow.from_outcome: {(time.perf_counter_ns() - start) / n / 1000:.3f} µs/call")

    prices = PriceTable(
        {
            "claude-sonnet-4-5": Price(Decimal(3), Decimal(15), Decimal("3.75"), Decimal("0.30")),
            "claude-*": Price(Decimal(1), Decimal(5), Decimal("1.25"), Decimal("0.10")),
        }
    )
    multiplier = Decimal("1.2")
    for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
        start = time.perf_counter_ns()
        for _ in range(n):
            prices.cost_nanos(model, outcome.usage, multiplier)
        kind = "exact" if model == "claude-sonnet-4-5" else "pattern"
        print(f"PriceTable.cost_nanos:  {(time.perf_counter_ns() - start) / n / 1000:.3f} µs/call ({kind})")


async def seed(db: Database) -> None:
    async with db.session() as session:
        session.add_all(Account(name=f"bench{i}", balance_nanos=10**15) for i in range(ACCOUNTS))
        await session.commit()


async def bench_database(name: str, url: str, rows: int, batch: int) -> None:
    await migrate(url)
    db = Database(url)
    try:
        await seed(db)
        async with db.engine.connect():  # warm the pool, as a serving gateway's is
            pass

        writer = LedgerWriter(db, max_batch=batch, max_pending=rows + 1)
        for r in make_rows(rows, "f"):
            writer.record(r)
        start = time.perf_counter()
        written = await writer.flush()
        elapsed = time.perf_counter() - start
        assert written == rows, (written, rows)
        print(f"{name:10} flush:     {rows / elapsed:10,.0f} rows/s ({rows:,} rows in {elapsed:.2f} s)")

        writer = LedgerWriter(db, max_batch=batch, max_pending=rows + 1)
        data = make_rows(rows, "s")
        writer.start()
        start = time.perf_counter()
        for i, r in enumerate(data):
            writer.record(r)
            if i % 100 == 99:
                await asyncio.sleep(0)
        await writer.stop()  # the loop's last flush, then whatever is still queued
        elapsed = time.perf_counter() - start
        assert writer.written == rows and writer.dropped == 0
        print(f"{name:10} sustained: {rows / elapsed:10,.0f} rows/s ({rows:,} rows in {elapsed:.2f} s)")
    finally:
        await db.close()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    base = make_url(
        os.environ.get("CLAUDESTORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"cs_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield base.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="max_batch (rows per transaction)")
    parser.add_argument("--calls", type=int, default=1_000_000, help="record() calls to time")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    bench_request_path(args.calls)
    with tempfile.TemporaryDirectory() as tmp:
        await bench_database("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args.rows, args.batch)
    if not args.no_postgres:
        async with postgres_database() as url:
            await bench_database("postgresql", url, args.rows, args.batch)


if __name__ == "__main__":
    asyncio.run(main())
