"""Child process for the ledger crash test: ``python ledger_crash_child.py URL COUNT INTERVAL``.

Records COUNT rows on a started :class:`LedgerWriter` (no explicit flush), waits three
flush intervals, prints ``READY`` and then idles until the test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from claudestore.billing.ledger import LedgerRow, LedgerWriter
from claudestore.storage.db import Database


async def main(url: str, count: int, interval: float) -> None:
    db = Database(url)
    async with db.engine.connect():  # a serving gateway's pool is warm (it checks keys first)
        pass
    writer = LedgerWriter(db, flush_interval=interval)
    writer.start()
    now = datetime.now(UTC)
    for i in range(count):
        writer.record(LedgerRow(f"crash_{i:04d}", now, 1, None, "anthropic", cost_nanos=1))
    await asyncio.sleep(interval * 3)
    print("READY", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
