"""A small async load generator (aiohttp on uvloop), run as its own process.

``wrk`` measures throughput and full-response latency; this one measures what wrk
cannot: time to first byte of an SSE stream, events per stream, a fixed offered rate,
and many streams held open at once.

    python bench/loadgen.py SPEC.json      # prints one JSON result line
    python bench/loadgen.py --serve        # one JSON spec per stdin line, one result line each

``--serve`` is how run.py uses it: one long-lived process (pinned to the load generator's
CPUs) so that no measurement pays for starting Python.

SPEC: ``{"mode", "url", "headers", "body", "stream", ...}`` with mode

* ``closed``: ``concurrency`` clients, each sending the next request when the last one
  ended, for ``duration`` seconds after ``warmup`` seconds;
* ``rate``: one request every ``1/rate`` s for ``duration`` s, whatever the answers do
  (at most ``max_inflight`` in flight; the rest are counted as ``dropped``);
* ``hold``: open ``count`` streams (``open_concurrency`` at a time), print
  ``READY {json}`` once each has delivered its first bytes (or ``timeout`` passed), then
  hold them until a line arrives on stdin, close them all and print the result.

Times are milliseconds. ``ttfb`` is the first body bytes for a stream (the first event),
the response headers otherwise; ``latency`` is the whole response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aiohttp

perf = time.perf_counter


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    out = {f"p{p:g}": s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] for p in points}
    out["mean"] = sum(s) / len(s)
    out["max"] = s[-1]
    return out


class Recorder:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.ttfb: list[float] = []
        self.events: list[int] = []
        self.bytes = 0
        self.errors: dict[str, int] = {}
        self.recording = True

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def one(session: aiohttp.ClientSession, spec: dict[str, Any], rec: Recorder) -> None:
    body: bytes = spec["_body"]
    t0 = perf()
    ttfb = None
    events = 0
    size = 0
    try:
        async with session.post(spec["url"], data=body, headers=spec["headers"]) as resp:
            if resp.status != 200:
                await resp.read()
                if rec.recording:
                    rec.error(f"HTTP {resp.status}")
                return
            if spec["stream"]:
                split = False  # the last chunk ended in the middle of a "\n\n"
                async for chunk in resp.content.iter_any():
                    if ttfb is None:
                        ttfb = perf()
                    size += len(chunk)
                    # An SSE event ends with a blank line: count "\n\n", also across chunk edges.
                    events += chunk.count(b"\n\n") + (split and chunk[:1] == b"\n")
                    split = chunk[-1:] == b"\n" and chunk[-2:] != b"\n\n"
            else:
                ttfb = perf()
                size = len(await resp.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        if rec.recording:
            rec.error(type(exc).__name__)
        return
    end = perf()
    if rec.recording:
        rec.latency.append((end - t0) * 1000)
        rec.ttfb.append(((ttfb or end) - t0) * 1000)
        rec.events.append(events)
        rec.bytes += size


def _session(spec: dict[str, Any], limit: int) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=float(spec.get("timeout", 60)))
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
    )


def _result(rec: Recorder, elapsed: float, **extra: Any) -> dict[str, Any]:
    n = len(rec.latency)
    return {
        "requests": n,
        "errors": sum(rec.errors.values()),
        "error_kinds": rec.errors,
        "elapsed_s": elapsed,
        "rps": n / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles(rec.latency),
        "ttfb_ms": percentiles(rec.ttfb),
        "events_total": sum(rec.events),
        "events_per_request": (sum(rec.events) / n) if n else 0.0,
        "events_per_s": sum(rec.events) / elapsed if elapsed > 0 else 0.0,
        "bytes": rec.bytes,
        **extra,
    }


async def closed(spec: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(spec.get("concurrency", 1))
    rec = Recorder()
    async with _session(spec, concurrency) as session:
        stop_at = 0.0

        async def client() -> None:
            while perf() < stop_at:
                await one(session, spec, rec)

        warmup = float(spec.get("warmup", 0))
        if warmup > 0:
            rec.recording = False
            stop_at = perf() + warmup
            await asyncio.gather(*(client() for _ in range(concurrency)))
            rec.recording = True
        start = perf()
        stop_at = start + float(spec["duration"])
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = perf() - start
    return _result(rec, elapsed, concurrency=concurrency)


async def rate(spec: dict[str, Any]) -> dict[str, Any]:
    rps = float(spec["rate"])
    max_inflight = int(spec.get("max_inflight", 2000))
    rec = Recorder()
    dropped = 0
    async with _session(spec, max_inflight) as session:
        tasks: set[asyncio.Task[None]] = set()
        warmup = float(spec.get("warmup", 0))
        for phase, seconds in (("warmup", warmup), ("measure", float(spec["duration"]))):
            if seconds <= 0:
                continue
            rec.recording = phase == "measure"
            start = perf()
            n = int(seconds * rps)
            for i in range(n):
                delay = start + i / rps - perf()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(tasks) >= max_inflight:
                    dropped += phase == "measure"
                    continue
                task = asyncio.ensure_future(one(session, spec, rec))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
            if phase == "measure":
                elapsed = perf() - start
    return _result(rec, elapsed, offered_rps=rps, dropped=dropped)


async def hold(spec: dict[str, Any]) -> dict[str, Any]:
    count = int(spec["count"])
    gate = asyncio.Semaphore(int(spec.get("open_concurrency", 100)))
    opened = 0
    failed: dict[str, int] = {}
    all_open = asyncio.Event()
    done = 0

    def settle() -> None:
        if opened + sum(failed.values()) >= count:
            all_open.set()

    async def stream(session: aiohttp.ClientSession) -> None:
        nonlocal opened, done
        first = False
        try:
            async with gate:
                resp = await session.post(spec["url"], data=spec["_body"], headers=spec["headers"])
                if resp.status != 200:
                    failed[f"HTTP {resp.status}"] = failed.get(f"HTTP {resp.status}", 0) + 1
                    resp.release()
                    settle()
                    return
                await resp.content.readany()
                first = True
                opened += 1
                settle()
            async with resp:
                async for _ in resp.content.iter_any():
                    pass
            done += 1
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if not first:
                failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
                settle()

    async with _session(spec, 0) as session:
        t0 = perf()
        tasks = [asyncio.ensure_future(stream(session)) for _ in range(count)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_open.wait(), float(spec.get("timeout", 60)))
        ready = {"open": opened, "failed": failed, "ended_early": done, "open_s": perf() - t0}
        print("READY " + json.dumps(ready), flush=True)
        await _readline()  # hold until told to let go
        still_open = opened - done
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {**ready, "still_open_at_stop": still_open}


MODES = {"closed": closed, "rate": rate, "hold": hold}


async def _readline() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    spec["_body"] = spec["body"].encode()
    return await MODES[spec["mode"]](spec)


async def serve() -> None:
    while line := await _readline():
        if not line.strip():
            continue
        try:
            result = await run_spec(json.loads(line))
        except Exception as exc:  # reported to the harness, which raises it
            result = {"failed": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


def main() -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # held streams need a socket each
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    if sys.argv[1:] == ["--serve"]:
        runner(serve())
        return
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    print(json.dumps(runner(run_spec(spec))), flush=True)


if __name__ == "__main__":
    main()
