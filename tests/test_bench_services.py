"""bench/services.py moves the machine's Redis and PostgreSQL off the gateway's CPUs for a
``--accounting postgres-redis`` run and puts their affinity masks back afterwards.

It runs against the real local servers (the ones the Redis and PostgreSQL tests use): it
moves every thread of them to one CPU, checks that a backend PostgreSQL forks afterwards
inherits the mask, and restores what was there. Skipped (or failed in CI) when the servers
are down, as the other service tests are.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support.databases import _admin_connection, _dsn, postgres_base_url
from tests.support.redis import redis_url, require_redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import contextlib

import services


def _masks(pids: list[int]) -> dict[int, set[int]]:
    out = {}
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                out[int(tid)] = os.sched_getaffinity(int(tid))
    return out


async def _new_backend_pid(dsn: str) -> tuple[asyncpg.Connection, int]:
    conn = await asyncpg.connect(dsn)
    return conn, int(await conn.fetchval("SELECT pg_backend_pid()"))


def test_services_are_moved_for_the_run_and_put_back() -> None:
    async def require_both() -> None:
        await require_redis(redis_url())
        await (await _admin_connection(postgres_base_url())).close()

    asyncio.run(require_both())
    pg_url = _dsn(postgres_base_url())

    target = (max(os.sched_getaffinity(0)),)
    rpid = services.redis_pid(redis_url())
    pg = services.postgres_pids(pg_url)
    assert Path(f"/proc/{rpid}/comm").read_text().startswith("redis")
    assert "postgres" in Path(f"/proc/{pg[0]}/cmdline").read_text()
    before = _masks([rpid, *pg])

    pinned = services.pin_accounting_services(target, pg_url, redis_url())
    try:
        if pinned.skipped and "CAP_SYS_NICE" in pinned.describe():
            assert not pinned.saved  # a refusal leaves nothing half-moved
            now = _masks([rpid, *pg])
            assert all(now[t] == before[t] for t in now.keys() & before.keys())
            pytest.skip(f"cannot move other users' processes here: {pinned.describe()}")
        assert not pinned.skipped, pinned.describe()
        assert "Redis" in pinned.describe() and "PostgreSQL" in pinned.describe()
        for tid, mask in _masks([rpid, *services.postgres_pids(pg_url)]).items():
            if tid in before:  # processes that existed when the run started
                assert mask == set(target), (tid, mask)

        async def forked_after() -> set[int]:
            conn, pid = await _new_backend_pid(pg_url)
            try:
                return os.sched_getaffinity(pid)
            finally:
                await conn.close()

        assert asyncio.run(forked_after()) == set(target)  # inherited from the postmaster
    finally:
        pinned.restore()

    after = _masks([rpid, *pg])
    for tid, mask in after.items():
        if tid in before:
            assert mask == before[tid], (tid, mask, before[tid])
    assert not pinned.saved


def test_remote_servers_are_left_alone() -> None:
    pinned = services.pin_accounting_services((0,), "postgresql://192.0.2.10/x", "redis://10.9.8.7:6379/0")
    assert not pinned.saved
    assert "Redis not moved (not on this machine)" in pinned.describe()
    assert "PostgreSQL not moved (not on this machine)" in pinned.describe()


def test_nothing_moves_when_nothing_is_pinned() -> None:
    pinned = services.pin_accounting_services((), "postgresql://127.0.0.1/x", "redis://127.0.0.1/0")
    assert not pinned.saved and "nothing is pinned" in pinned.describe()
