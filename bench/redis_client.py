"""CPU per Redis call: the limiter's own pipelined client (``limits.resp``) against redis-py.

    .venv/bin/python bench/redis_client.py                 # redis://127.0.0.1:6379/13, 20,000 calls
    .venv/bin/python bench/redis_client.py --calls 50000 --concurrency 1 16 64

Both run the same tiny Lua script with the limiter's argument shape (``EVALSHA`` with 8 keys
and 14 arguments) from C concurrent callers on one uvloop event loop, and the figures are
this process's CPU time (user + system) and wall time per call: the baseline is redis-py
5 (``redis.asyncio`` with hiredis, a ``BlockingConnectionPool`` of 64 as the limiter had),
measured in the same run, alternated over ``--rounds`` rounds (median reported).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from redis.asyncio import BlockingConnectionPool, Redis

from claudestore.limits.resp import RespClient

SCRIPT = "return #KEYS + #ARGV"
KEYS = [f"cs:{k}:key:{i}" for i in range(2) for k in ("log", "sum", "inf")] + ["cs:quota:7:1", "cs:bal:7"]
ARGS = ["tag123", "4096", "60000000", "900000000", "2", "100", "100000", "", "600", "", "", "", "0", "0"]


async def measure(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> tuple[float, float]:
    """CPU µs and wall µs per call."""

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    done = calls // concurrency * concurrency
    return (time.process_time() - cpu) / done * 1e6, (time.perf_counter() - wall) / done * 1e6


async def main(args: argparse.Namespace) -> None:
    pool = BlockingConnectionPool.from_url(args.url, max_connections=64, timeout=5)
    redis_py = Redis(connection_pool=pool)
    own = RespClient(args.url)
    sha = await redis_py.script_load(SCRIPT)
    clients: dict[str, Callable[[], Awaitable[Any]]] = {
        "redis-py": lambda: redis_py.evalsha(sha, len(KEYS), *KEYS, *ARGS),  # type: ignore[misc]
        "limits.resp": lambda: own.call("EVALSHA", sha, len(KEYS), *KEYS, *ARGS),
    }
    for call in clients.values():  # warm: connections open, code paths hot
        await measure(call, 2000, 16)
    print(f"{args.calls:,} EVALSHA calls per measurement, median of {args.rounds} alternated rounds\n")
    print("| concurrency | client | CPU µs / call | wall µs / call | CPU vs redis-py |")
    print("|---:|---|---:|---:|---:|")
    for conc in args.concurrency:
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, call in clients.items():
                figures[name].append(await measure(call, args.calls, conc))
        base = statistics.median(c for c, _ in figures["redis-py"])
        for name, runs in figures.items():
            cpu = statistics.median(c for c, _ in runs)
            wall = statistics.median(w for _, w in runs)
            print(f"| {conc} | {name} | {cpu:.1f} | {wall:.1f} | {cpu / base:.2f}x |")
    await own.close()
    await redis_py.aclose()
    await pool.disconnect()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--rounds", type=int, default=3)
    uvloop.run(main(p.parse_args()))
