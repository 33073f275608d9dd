"""Keep the accounting services (PostgreSQL, Redis) off the gateway's CPUs during a run.

The bench pins the gateway to its CPU(s) and the fake upstream and load generators to the
others, but Redis and PostgreSQL are servers the machine already runs: left alone, the
scheduler puts them on whichever CPU is free, often the gateway's, and their CPU time is then
taken from the gateway under test. Like the fake upstream they are external dependencies, so
for ``--accounting postgres-redis`` they are moved to the load generator's CPUs for the run and
their affinity masks are restored afterwards.

Only servers on this machine are touched (the URL's host is a loopback address), found by
asking them: Redis's ``INFO server`` gives its ``process_id``; PostgreSQL's backend PID
(``pg_backend_pid()``) has the postmaster as its parent, and every child of the postmaster
is a PostgreSQL process. Every thread (``/proc/<pid>/task``) is moved; backends forked later
inherit the postmaster's mask. Moving another user's process needs CAP_SYS_NICE: without it
nothing is moved and the report says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from procs import asyncpg_dsn, children_of, parent_of


def is_local(url: str) -> bool:
    host = urlsplit(url).hostname or "localhost"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def redis_pid(url: str) -> int:
    from claudestore.limits.resp import RespClient  # the gateway's own client

    async def ask() -> int:
        client = RespClient(url, timeout=3.0)
        try:
            info = await client.call("INFO", "server")
        finally:
            await client.close()
        text = info.decode() if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith("process_id:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("no process_id in Redis INFO server")

    return asyncio.run(ask())


def postgres_pids(url: str) -> list[int]:
    """The postmaster and every process it has forked."""
    import asyncpg

    async def ask() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:  # the backend's parent, read while the backend lives
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            return parent_of(backend)  # /proc: no disk to wait for
        finally:
            await conn.close()

    postmaster = asyncio.run(ask())
    return [postmaster, *children_of(postmaster)]


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


@dataclass
class PinnedServices:
    """Affinity masks saved before moving, put back by :meth:`restore`."""

    cpus: tuple[int, ...]
    saved: dict[int, set[int]] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def move(self, name: str, pids: list[int]) -> None:
        tids = [t for p in pids for t in _threads(p)]
        saved: dict[int, set[int]] = {}
        try:
            for tid in tids:
                try:
                    saved[tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, self.cpus)
                except ProcessLookupError:  # a backend that just exited
                    saved.pop(tid, None)
        except PermissionError as exc:
            self._put_back(saved)
            self.skipped.append(f"{name} not moved ({exc.strerror}; needs CAP_SYS_NICE)")
            return
        self.saved.update(saved)
        self.moved.append(f"{name} ({len(pids)} process(es), {len(saved)} thread(s))")

    @staticmethod
    def _put_back(saved: dict[int, set[int]]) -> None:
        for tid, mask in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, mask)

    def restore(self) -> None:
        self._put_back(self.saved)
        self.saved.clear()

    def describe(self) -> str:
        where = ",".join(map(str, self.cpus))
        parts = [f"{', '.join(self.moved)} moved to CPU {where} for the run"] if self.moved else []
        return "; ".join(parts + self.skipped)


def pin_accounting_services(cpus: tuple[int, ...], postgres_url: str, redis_url: str) -> PinnedServices:
    """Move the local Redis and PostgreSQL servers to ``cpus`` (none if ``cpus`` is empty)."""
    pinned = PinnedServices(cpus)
    if not cpus:
        pinned.skipped.append("Redis and PostgreSQL not moved (nothing is pinned)")
        return pinned
    for name, url, find in (
        ("Redis", redis_url, lambda u: [redis_pid(u)]),
        ("PostgreSQL", postgres_url, postgres_pids),
    ):
        if not is_local(url):
            pinned.skipped.append(f"{name} not moved (not on this machine)")
            continue
        try:
            pids = find(url)
        except (OSError, RuntimeError) as exc:
            pinned.skipped.append(f"{name} not moved (could not find its processes: {exc})")
            continue
        pinned.move(name, pids)
    return pinned
