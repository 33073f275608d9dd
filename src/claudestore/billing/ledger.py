"""The ledger writer: usage rows and balance charges, batched off the request path.

The request path calls :meth:`LedgerWriter.record` once per finished request: it only
appends to an in-memory queue (synchronous, O(1), never awaits, never raises). A
background loop (:meth:`LedgerWriter.start`) flushes every ``flush_interval`` seconds,
sooner when ``max_batch`` rows wait. A flush writes up to ``max_batch`` rows in **one
transaction**: the rows with ``ON CONFLICT (request_id) DO NOTHING`` (a row written twice,
e.g. by a retried flush whose commit was in doubt, is stored and charged once), then one
``UPDATE accounts SET balance_nanos = balance_nanos - :sum`` per account for the rows really
inserted, in account id order (concurrent writers cannot deadlock). Ledger and balances
commit together.

The statements have one shape whatever the batch size, so the driver prepares them once
(a multi-row ``VALUES`` list per batch size would be a new statement, parsed and cached,
every flush) and the rows go to the driver as plain tuples: no per-row SQLAlchemy work.
SQLite runs one single-row ``INSERT`` with ``executemany`` and learns from the row count
that every row was new; when some were not (a duplicate: rare), the transaction is rolled
back and the batch written again with ``INSERT ... RETURNING account_id, cost_nanos``, which
names the rows really inserted. PostgreSQL runs one ``INSERT ... SELECT * FROM unnest(<one
array per column>) ... RETURNING account_id, cost_nanos``.

Rows leave the queue only once committed. A flush that fails for a transient reason
(database down, locked, unreachable) keeps its rows and the loop retries with exponential
backoff (up to :data:`MAX_BACKOFF` s). A batch the database refuses on its data is split
until the offending row is isolated; that row alone is dropped with an ERROR log
(``rejected``). While ``max_pending`` rows are queued, new rows are dropped and counted
(``dropped``, ERROR-logged each loop tick): the request path never blocks.

Durability: a row is durable once its flush commits. On SIGKILL or a crash, only the rows
of requests that finished within about ``flush_interval`` plus one write before the kill
are lost (plus, while the database is unavailable, the backlog held for it); nothing
else. :meth:`LedgerWriter.stop` flushes everything on a graceful shutdown. SQLite runs
WAL with ``synchronous=NORMAL``: a commit survives a process kill, only a power loss may
undo the last few.

Logs carry counts, request ids and exception classes only: never prompts or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from itertools import islice
from operator import attrgetter
from typing import Any

from sqlalchemy import Dialect, Insert, String
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from claudestore.server.outcome import Outcome
from claudestore.storage.billing_models import Account, UsageRecord
from claudestore.storage.db import Database

log = logging.getLogger("claudestore.billing.ledger")

MAX_BACKOFF = 5.0  # seconds between retries while the database is unavailable


@dataclass(slots=True)
class LedgerRow:
    """One ``usage_records`` row (every column but the surrogate ``id``)."""

    request_id: str
    created_at: datetime  # aware UTC
    key_id: int | None
    account_id: int | None
    endpoint: str
    model: str | None = None
    upstream: str | None = None
    upstream_model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_nanos: int = 0
    status: int = 200
    error_kind: str | None = None
    stop_reason: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    streamed: bool = False
    client_disconnected: bool = False
    attempts: int = 1

    @classmethod
    def from_outcome(
        cls, outcome: Outcome, *, account_id: int | None, cost_nanos: int, created_at: datetime | None = None
    ) -> LedgerRow:
        """The row of a finished request; ``created_at`` defaults to now."""
        o, u = outcome, outcome.usage
        return cls(
            o.request_id,
            created_at or datetime.now(UTC),
            o.key_id,
            account_id,
            o.endpoint,
            o.model,
            o.upstream,
            o.upstream_model,
            u.input_tokens,
            u.output_tokens,
            u.cache_write_tokens,
            u.cache_read_tokens,
            cost_nanos,
            o.status,
            o.error_kind,
            o.stop_reason,
            o.latency_ms,
            o.ttft_ms,
            o.streamed,
            o.client_disconnected,
            getattr(o, "attempts", 1),  # not every Outcome counts upstream attempts
        )

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
# ``from_outcome`` passes the fields by position, in this order.
assert COLUMNS == (
    "request_id", "created_at", "key_id", "account_id", "endpoint", "model", "upstream", "upstream_model",
    "input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "cost_nanos", "status",
    "error_kind", "stop_reason", "latency_ms", "ttft_ms", "streamed", "client_disconnected", "attempts",
), COLUMNS  # fmt: skip
_values = attrgetter(*COLUMNS)  # a row's values as a tuple, in COLUMNS order

_ledger = UsageRecord.__table__
_accounts = Account.__table__


@functools.cache
def _insert(dialect: str) -> Insert:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - ClaudeStore supports these two
        raise RuntimeError(f"LedgerWriter does not support the {dialect} dialect")
    stmt = insert(_ledger).on_conflict_do_nothing(index_elements=["request_id"])
    return stmt.returning(_ledger.c.account_id, _ledger.c.cost_nanos)


def _marks(style: str, n: int) -> list[str]:
    """``n`` positional parameter markers in the driver's style."""
    if style == "qmark":
        return ["?"] * n
    if style == "format":
        return ["%s"] * n
    if style == "numeric_dollar":
        return [f"${i}" for i in range(1, n + 1)]
    if style == "numeric":
        return [f":{i}" for i in range(1, n + 1)]
    raise RuntimeError(f"LedgerWriter does not support the {style} parameter style")  # pragma: no cover


class _Plan:
    """One dialect's driver-level statements, fixed in shape, and the per-column conversions
    that SQLAlchemy applies (the same bind processors, so the stored values are the same)."""

    __slots__ = ("charge_sql", "columnar", "insert_sql", "processors")

    def __init__(self, dialect: Dialect) -> None:
        marks = _marks(dialect.paramstyle, len(COLUMNS))
        head = f"INSERT INTO {_ledger.name} ({', '.join(COLUMNS)})"
        conflict = "ON CONFLICT (request_id) DO NOTHING"
        # PostgreSQL: one statement with one array per column, whatever the batch size. Strings
        # are cast to unbounded VARCHAR: an explicit VARCHAR(n) cast would truncate an
        # over-long value instead of refusing it as the insert into the column does.
        self.columnar = dialect.name == "postgresql"
        if self.columnar:
            casts = [
                "VARCHAR" if isinstance(c.type, String) else c.type.compile(dialect=dialect)
                for c in (_ledger.c[name] for name in COLUMNS)
            ]
            arrays = ", ".join(f"{m}::{cast}[]" for m, cast in zip(marks, casts, strict=True))
            returning = "RETURNING account_id, cost_nanos"
            self.insert_sql = f"{head} SELECT * FROM unnest({arrays}) {conflict} {returning}"
        else:  # one row per execution, run with executemany
            self.insert_sql = f"{head} VALUES ({', '.join(marks)}) {conflict}"
        amount, account = _marks(dialect.paramstyle, 2)
        self.charge_sql = (
            f"UPDATE {_accounts.name} SET balance_nanos = balance_nanos - {amount} WHERE id = {account}"
        )
        processors = []
        for i, name in enumerate(COLUMNS):
            proc = _ledger.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                processors.append((i, proc))
        self.processors = tuple(processors)

    def values(self, row: LedgerRow) -> tuple[Any, ...]:
        """The row's bound values; :class:`_Refused` when a bind processor refuses one."""
        values = _values(row)
        if not self.processors:
            return values
        out = list(values)
        for i, proc in self.processors:
            try:
                out[i] = proc(out[i])
            except (ValueError, TypeError, AttributeError) as exc:
                raise _Refused(f"{COLUMNS[i]}: {exc}") from None
        return tuple(out)


_plans: dict[tuple[str, str, str], _Plan] = {}


def _plan(dialect: Dialect) -> _Plan:
    key = (dialect.name, dialect.driver, dialect.paramstyle)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _Plan(dialect)
    return plan


class _Refused(Exception):
    """A value of a row was refused before it reached the database (e.g. a naive datetime)."""


class _NotAllNew(Exception):
    """Some rows of an ``executemany`` batch were already in the ledger: write it again with RETURNING."""


def _refused_data(exc: BaseException) -> bool:
    """The database (or a bind processor) refused the rows themselves: retrying cannot help."""
    if isinstance(exc, IntegrityError | DataError | _Refused):
        return True
    if isinstance(exc, DBAPIError):  # asyncpg reports data errors as plain DBAPIError: ask SQLSTATE
        return str(getattr(exc.orig, "sqlstate", None) or "")[:2] in ("22", "23")  # data, integrity
    return isinstance(exc, StatementError)  # a bind processor refused a value (e.g. a naive datetime)


def _describe(exc: BaseException) -> str:
    """Exception class and driver message, without the SQL statement or its parameters."""
    cause = getattr(exc, "orig", None) or exc
    return f"{type(exc).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}"


class LedgerWriter:
    """Batches :class:`LedgerRow` s into the ledger and charges balances (see the module doc)."""

    def __init__(
        self, db: Database, *, flush_interval: float = 0.05, max_batch: int = 1000, max_pending: int = 100_000
    ) -> None:
        self.db = db  # may be swapped (e.g. after a failover); the next flush uses the new one
        self.flush_interval = flush_interval
        self.max_batch = max(1, max_batch)
        self.max_pending = max_pending
        self.written = 0  # rows inserted
        self.duplicates = 0  # rows already in the ledger (same request_id): neither stored nor charged
        self.dropped = 0  # rows refused because max_pending rows were waiting
        self.rejected = 0  # rows the database refused on their data
        self.failed_flushes = 0
        self._pending: deque[LedgerRow] = deque()
        self._unreported_drops = 0
        self._flush_lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._backing_off = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, row: LedgerRow) -> None:
        """Queue ``row`` for the next flush. O(1); never awaits, never raises."""
        try:
            pending = self._pending
            if len(pending) >= self.max_pending:
                self.dropped += 1
                self._unreported_drops += 1
                return
            pending.append(row)
            if len(pending) >= self.max_batch and self._wake is not None and not self._backing_off:
                self._wake.set()
        except Exception:  # pragma: no cover - nothing above should raise; the caller must not see it
            pass

    def start(self) -> None:
        """Start the background flush loop (idempotent). Needs a running event loop."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def stop(self, retry_for: float = 10.0) -> None:
        """Stop the loop and flush everything, retrying for up to ``retry_for`` seconds."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        deadline = time.monotonic() + retry_for
        while self._pending:
            try:
                await self.flush()
            except Exception:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.error("ledger writer stopped with %d rows it could not write", len(self._pending))
                    break
                await asyncio.sleep(min(0.5, remaining))
        self._report_drops()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            backoff = min(max(self.flush_interval, 0.05) * 2**failures, MAX_BACKOFF)
            await self._sleep(backoff * random.uniform(0.8, 1.2) if failures else self.flush_interval)
            self._report_drops()
            if not self._pending:
                continue
            try:
                await self.flush()
            except Exception:
                failures += 1
                self._backing_off = True
            else:
                failures = 0
                self._backing_off = False

    async def _sleep(self, delay: float) -> None:
        wake = self._wake
        if wake is None or self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()
        wake.clear()

    def _report_drops(self) -> None:
        if self._unreported_drops:
            count, self._unreported_drops = self._unreported_drops, 0
            pending, limit = len(self._pending), self.max_pending
            msg = "ledger backlog full (%d rows pending, max_pending=%d): dropped %d rows (%d in total)"
            log.error(msg, pending, limit, count, self.dropped)

    async def flush(self) -> int:
        """Write every row queued so far, ``max_batch`` rows per transaction.

        Returns how many rows were inserted (duplicates and rejected rows excluded). If
        the database is unavailable the error propagates and the rows stay queued.
        """
        async with self._flush_lock:
            self._report_drops()
            target = len(self._pending)
            inserted = 0
            while target > 0 and self._pending:
                batch = list(islice(self._pending, min(target, self.max_batch)))
                try:
                    inserted += await self._write(batch)
                except Exception as exc:
                    self.failed_flushes += 1
                    log.warning("ledger flush of %d rows failed, will retry: %s", len(batch), _describe(exc))
                    raise
                for _ in batch:  # only the flush removes rows; record() only appends on the right
                    self._pending.popleft()
                target -= len(batch)
            return inserted

    async def _write(self, batch: list[LedgerRow]) -> int:
        try:
            return await self._transaction(batch)
        except Exception as exc:
            if not _refused_data(exc):
                raise
            if len(batch) == 1:
                self.rejected += 1
                log.error(
                    "ledger row %s refused by the database, dropped: %s", batch[0].request_id, _describe(exc)
                )
                return 0
            half = len(batch) // 2
            return await self._write(batch[:half]) + await self._write(batch[half:])

    async def _transaction(self, batch: list[LedgerRow]) -> int:
        engine = self.db.engine
        plan = _plan(engine.dialect)
        rows = [plan.values(row) for row in batch]
        try:
            async with engine.begin() as conn:
                if plan.columnar:
                    result = await conn.exec_driver_sql(
                        plan.insert_sql, tuple(map(list, zip(*rows, strict=True)))
                    )
                    inserted = result.all()
                else:
                    result = await conn.exec_driver_sql(plan.insert_sql, rows)
                    if result.rowcount != len(rows):
                        raise _NotAllNew  # rolls the batch back: written again below, with RETURNING
                    inserted = [(row.account_id, row.cost_nanos) for row in batch]
                await self._charge(conn, plan, inserted)
        except _NotAllNew:
            return await self._transaction_returning(batch)
        return self._count(batch, len(inserted))

    async def _transaction_returning(self, batch: list[LedgerRow]) -> int:
        """The batch in one multi-row ``INSERT ... RETURNING``: which rows were really inserted."""
        engine = self.db.engine
        async with engine.begin() as conn:
            result = await conn.execute(_insert(engine.dialect.name), [row.params() for row in batch])
            inserted = result.all()
            await self._charge(conn, _plan(engine.dialect), inserted)
        return self._count(batch, len(inserted))

    @staticmethod
    async def _charge(conn: Any, plan: _Plan, inserted: list[Any]) -> None:
        """One balance update per account, in account id order, for the rows really inserted."""
        charges: dict[int, int] = {}
        for account_id, cost in inserted:
            if account_id is not None and cost:
                charges[account_id] = charges.get(account_id, 0) + cost
        if charges:
            await conn.exec_driver_sql(plan.charge_sql, [(charges[a], a) for a in sorted(charges)])

    def _count(self, batch: list[LedgerRow], inserted: int) -> int:
        self.written += inserted
        self.duplicates += len(batch) - inserted
        return inserted
