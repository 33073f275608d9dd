"""Throughput and CPU of the limiter backends: acquire + settle pairs (not a test).

Run: ``.venv/bin/python bench/bench_limiter.py [--n N] [--redis-url URL] [--concurrency C]``

Each admission is the full gateway shape: an API-key scope and an account scope (each
with rpm, tpm and concurrency), a token quota and an enforced balance; limits are high
enough that nothing is refused. Settled as the gateway settles (``settle_now`` when the
backend has it: Redis sends the script without awaiting its reply). Measured on a uvloop
event loop for the memory backend and for Redis, with one task at a time (a round trip
per call) and with ``C`` concurrent tasks sharing the one pipelined connection: pairs per
second and this process's CPU time (user + system) per pair, the figure that the gateway
pays per request. The Redis keys live under a random prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import redis.asyncio as aioredis
import uvloop

from claudestore.limits.base import Admission, Limiter, Quota, Scope
from claudestore.limits.memory import MemoryLimiter
from claudestore.limits.redis import RedisLimiter

BIG = 10**12
ADMISSION = Admission(
    scopes=(Scope("key:1", BIG, BIG, BIG), Scope("acct:1", BIG, BIG, BIG)),
    tokens=1_000,
    account_id=1,
    cost_nanos=5_000,
    balance_seed=BIG * 1000,
    quota=Quota("quota:1:0", limit=BIG * 1000, used_seed=0, period_end=time.time() + 86_400),
)


async def pairs(limiter: Limiter, n: int) -> None:
    settle_now = getattr(limiter, "settle_now", None)
    for _ in range(n):
        lease = await limiter.acquire(ADMISSION)
        if settle_now is None or not settle_now(lease, 600, 3_000):
            await limiter.settle(lease, 600, 3_000)


async def measure(limiter: Limiter, n: int, tasks: int) -> tuple[float, float]:
    """(acquire + settle pairs per second, CPU µs per pair) with ``tasks`` concurrent tasks."""
    await pairs(limiter, 50)  # warm up: connections, scripts, seeds
    per_task = max(1, n // tasks)
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(pairs(limiter, per_task) for _ in range(tasks)))
    done = per_task * tasks
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1e6


async def evalsha_stats(url: str) -> tuple[int, int]:
    """(calls, µs) of EVALSHA on the server so far (server-wide: other clients count too)."""
    client = aioredis.Redis.from_url(url)
    try:
        stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)), int(stats.get("usec", 0))
    finally:
        await client.aclose()


async def delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="acquire+settle pairs per run")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    rows: list[tuple[str, int, float, float, str]] = []
    for tasks in (1, args.concurrency):
        rows.append(("memory", tasks, *await measure(MemoryLimiter(), args.n, tasks), "-"))
    for tasks in (1, args.concurrency):
        prefix = f"cs-bench-{secrets.token_hex(4)}:"
        limiter = RedisLimiter(args.redis_url, prefix=prefix)
        try:
            calls0, usec0 = await evalsha_stats(args.redis_url)
            rate, cpu = await measure(limiter, args.n // 4, tasks)
            await limiter.close()  # after the replies of every settlement sent
            calls1, usec1 = await evalsha_stats(args.redis_url)
            server = f"{(usec1 - usec0) / max(1, calls1 - calls0):.1f}"
            rows.append(("redis", tasks, rate, cpu, server))
        finally:
            await limiter.close()
            await delete_prefix(args.redis_url, prefix)
    print(
        f"{'backend':<8} {'tasks':>5} {'pairs/s':>10} {'wall µs/pair':>13} {'CPU µs/pair':>12} {'server µs/script':>17}"
    )
    for backend, tasks, rate, cpu, server in rows:
        print(f"{backend:<8} {tasks:>5} {rate:>10,.0f} {1e6 / rate:>13.1f} {cpu:>12.1f} {server:>17}")
    print("pair = one acquire + one settle (2 scopes with rpm/tpm/concurrency, quota, balance);")
    print("wall µs/pair = 1 / throughput; CPU µs/pair = this process's user + system time per pair;")
    print("server µs/script = Redis CPU time per EVALSHA (INFO commandstats)")


if __name__ == "__main__":
    uvloop.run(main())
