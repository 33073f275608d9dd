"""The ledger writer and reconciliation, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from claudestore.billing.ledger import LedgerRow, LedgerWriter
from claudestore.billing.reconcile import BalanceDiff, reconcile
from claudestore.core.response import Usage
from claudestore.server.outcome import Outcome
from claudestore.storage.billing_models import Account, CreditEntry, UsageRecord
from claudestore.storage.db import Database
from claudestore.storage.migrate import migrate

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CHILD = Path(__file__).parent / "support" / "ledger_crash_child.py"


def row(request_id: str, account_id: int | None, cost: int, **fields: Any) -> LedgerRow:
    fields = {"created_at": NOW, "key_id": 7, "endpoint": "anthropic", "model": "claude-sonnet-4-5", **fields}
    return LedgerRow(request_id=request_id, account_id=account_id, cost_nanos=cost, **fields)


async def make_accounts(db: Database, *balances: int) -> list[int]:
    async with db.session() as session:
        accounts = [Account(name=f"acct{i}", balance_nanos=b) for i, b in enumerate(balances)]
        session.add_all(accounts)
        await session.commit()
        return [a.id for a in accounts]


async def balances(db: Database) -> dict[int, int]:
    async with db.session() as session:
        return dict((await session.execute(select(Account.id, Account.balance_nanos))).all())


async def ledger_count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@contextmanager
def count_commits(db: Database) -> Iterator[list[int]]:
    commits: list[int] = []

    def on_commit(_conn: Any) -> None:
        commits.append(1)

    event.listen(db.engine.sync_engine, "commit", on_commit)
    try:
        yield commits
    finally:
        event.remove(db.engine.sync_engine, "commit", on_commit)


def unreachable(db: Database, tmp_path: Path) -> Database:
    """A database of the same kind that cannot be reached: a closed port, a missing directory."""
    if db.engine.dialect.name == "postgresql":
        return Database("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    return Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'ledger.db'}")


async def test_flush_writes_rows_and_charges_in_one_transaction(database: Database) -> None:
    ids = await make_accounts(database, 10**12, 10**12, 10**12)
    rng = random.Random(7)
    rows = [row(f"req_{i:05d}", rng.choice([*ids, None]), rng.randrange(0, 10**7)) for i in range(1000)]
    writer = LedgerWriter(database)
    for r in rows:
        writer.record(r)
    assert writer.pending == 1000 and await ledger_count(database) == 0

    with count_commits(database) as commits:
        assert await writer.flush() == 1000
    assert len(commits) == 1
    assert (writer.pending, writer.written, writer.duplicates, writer.failed_flushes) == (0, 1000, 0, 0)
    assert await ledger_count(database) == 1000
    expected = {a: 10**12 - sum(r.cost_nanos for r in rows if r.account_id == a) for a in ids}
    assert await balances(database) == expected
    assert await reconcile(database) == [
        BalanceDiff(a, expected[a], -(10**12 - expected[a]), 10**12) for a in ids
    ]  # no credit entries: off by exactly the opening balance


async def test_same_request_id_is_stored_and_charged_once(database: Database) -> None:
    [acct] = await make_accounts(database, 1000)
    writer = LedgerWriter(database)
    writer.record(row("req_dup", acct, 100))
    writer.record(row("req_dup", acct, 100))  # twice in one batch
    writer.record(row("req_other", acct, 1))
    assert await writer.flush() == 2
    writer.record(row("req_dup", acct, 100))  # and again in a later flush (e.g. a retried batch)
    assert await writer.flush() == 0
    assert (writer.written, writer.duplicates) == (2, 2)
    assert await ledger_count(database) == 2
    assert await balances(database) == {acct: 899}


async def test_background_loop_and_stop(database: Database) -> None:
    [acct] = await make_accounts(database, 0)
    writer = LedgerWriter(database, flush_interval=0.01, max_batch=7)
    writer.start()
    try:
        for i in range(50):
            writer.record(row(f"req_{i}", acct, 2))
        await wait_for(lambda: writer.pending == 0)
        for i in range(50, 60):
            writer.record(row(f"req_{i}", acct, 2))
    finally:
        await writer.stop()
    assert writer.pending == 0 and writer.written == 60
    assert await balances(database) == {acct: -120}


async def test_rows_survive_an_unavailable_database(database: Database, tmp_path: Path) -> None:
    [acct] = await make_accounts(database, 500)
    down = unreachable(database, tmp_path)
    writer = LedgerWriter(down, flush_interval=0.01)
    for i in range(50):
        writer.record(row(f"req_{i}", acct, 3))
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        await writer.flush()
    assert (writer.pending, writer.failed_flushes) == (50, 1)

    writer.start()
    try:
        await wait_for(lambda: writer.failed_flushes >= 3)  # retried, with backoff
        assert writer.pending == 50
        writer.record(row("req_late", acct, 3))
        writer.db = database  # the database is back
        await wait_for(lambda: writer.pending == 0)
    finally:
        await writer.stop()
        await down.close()
    assert writer.written == 51 and await ledger_count(database) == 51
    assert await balances(database) == {acct: 500 - 51 * 3}


async def test_bad_rows_and_overflow_are_dropped_not_retried(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    [acct] = await make_accounts(database, 100)
    writer = LedgerWriter(database, max_pending=12)
    for i in range(10):
        writer.record(row(f"req_{i}", acct, 1))
    writer.record(row("req_naive", acct, 1, created_at=datetime(2026, 1, 1)))  # naive: refused
    writer.record(LedgerRow("req_null", NOW, 7, acct, None, cost_nanos=1))  # type: ignore[arg-type]
    for i in range(5):
        writer.record(row(f"req_over_{i}", acct, 1))  # beyond max_pending
    assert (writer.pending, writer.dropped) == (12, 5)
    with caplog.at_level(logging.ERROR, logger="claudestore.billing.ledger"):
        assert await writer.flush() == 10  # the good rows of the batch are not held back
    assert (writer.rejected, writer.pending, writer.failed_flushes) == (2, 0, 0)
    assert "dropped 5 rows" in caplog.text and "req_naive refused" in caplog.text
    assert await balances(database) == {acct: 90}


async def test_row_from_outcome_round_trips(database: Database) -> None:
    outcome = Outcome(
        "req_outcome",
        "openai",
        key_id=3,
        model="claude-opus-4-1",
        upstream="anthropic-main",
        upstream_model="claude-opus-4-1-20250805",
        streamed=True,
        status=200,
        stop_reason="end_turn",
        usage=Usage(input_tokens=11, output_tokens=22, cache_write_tokens=33, cache_read_tokens=44),
        started=100.0,
        first_byte_at=100.25,
        finished_at=101.5,
    )
    r = LedgerRow.from_outcome(outcome, account_id=None, cost_nanos=1234, created_at=NOW)
    writer = LedgerWriter(database)
    writer.record(r)
    await writer.flush()
    async with database.session() as session:
        stored = (await session.scalars(select(UsageRecord))).one().as_dict()
    stored.pop("id")
    assert stored == r.params()
    assert (stored["latency_ms"], stored["ttft_ms"], stored["cache_read_tokens"]) == (1500.0, 250.0, 44)
    assert LedgerRow.from_outcome(outcome, account_id=1, cost_nanos=0).created_at.tzinfo is UTC


async def test_reconcile_finds_and_fixes_a_planted_difference(database: Database) -> None:
    a, b = await make_accounts(database, 0, 0)
    async with database.session() as session:
        session.add_all(
            [
                CreditEntry(account_id=a, amount_nanos=5000, kind="topup"),
                CreditEntry(account_id=a, amount_nanos=1000, kind="grant"),
                CreditEntry(account_id=b, amount_nanos=700, kind="redeem"),
            ]
        )
        await session.execute(update(Account).where(Account.id == a).values(balance_nanos=6000))
        await session.execute(update(Account).where(Account.id == b).values(balance_nanos=700))
        await session.commit()
    writer = LedgerWriter(database)
    for i, (acct, cost) in enumerate([(a, 100), (a, 250), (b, 70), (None, 9)]):
        writer.record(row(f"req_{i}", acct, cost))
    await writer.flush()
    assert await reconcile(database) == []

    async with database.session() as session:  # plant: b loses 12 nanos outside the ledger
        await session.execute(update(Account).where(Account.id == b).values(balance_nanos=618))
        await session.commit()
    diff = BalanceDiff(b, stored=618, computed=630, difference=-12)
    assert await reconcile(database) == [diff]
    assert await reconcile(database, fix=True) == [
        BalanceDiff(b, stored=618, computed=630, difference=-12, fixed=True)
    ]
    assert await balances(database) == {a: 5650, b: 630}
    assert await reconcile(database) == []


async def test_rows_recorded_before_a_sigkill_are_in_the_ledger(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    await migrate(url)
    interval = 0.05
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), url, "100", str(interval), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            assert (await proc.stdout.readline()).strip() == b"READY"
        proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(5):
            assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    database = Database(url)
    try:
        assert await ledger_count(database) == 100
    finally:
        await database.close()


async def test_statements_have_one_shape_whatever_the_batch_size(database: Database) -> None:
    """A multi-row VALUES list per batch size would be a new statement each flush, parsed and
    cached by the driver (SQLite's statement cache held megabytes of them under load)."""
    [acct] = await make_accounts(database, 10**9)
    statements: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        writer = LedgerWriter(database)
        n = 0
        for size in (1, 7, 50, 3):
            for _ in range(size):
                writer.record(row(f"req_shape_{n}", acct, 1))
                n += 1
            assert await writer.flush() == size
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", on_execute)
    inserts = {s for s in statements if s.lstrip().upper().startswith("INSERT")}
    updates = {s for s in statements if s.lstrip().upper().startswith("UPDATE")}
    assert len(inserts) == 1 and len(updates) == 1, statements
    assert await ledger_count(database) == n and await balances(database) == {acct: 10**9 - n}


async def test_a_duplicate_in_a_later_batch_is_found_and_not_charged(database: Database) -> None:
    [acct] = await make_accounts(database, 1000)
    writer = LedgerWriter(database)
    writer.record(row("req_a", acct, 10))
    assert await writer.flush() == 1
    for name, cost in (("req_b", 20), ("req_a", 10), ("req_c", 30)):  # req_a again, in the middle
        writer.record(row(name, acct, cost))
    assert await writer.flush() == 2
    assert (writer.written, writer.duplicates) == (3, 1)
    assert await balances(database) == {acct: 1000 - 60}


async def test_an_over_long_value_is_refused_not_truncated(database: Database) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    [acct] = await make_accounts(database, 100)
    writer = LedgerWriter(database)
    writer.record(row("req_ok", acct, 1))
    writer.record(row("r" * 41, acct, 1))  # request_id is VARCHAR(40)
    assert await writer.flush() == 1
    assert writer.rejected == 1 and await ledger_count(database) == 1
