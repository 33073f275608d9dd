#!/usr/bin/env python3
"""Soak test: mixed traffic against a real gateway for a long time; watch memory, file
descriptors and the ledger. Not part of CI (tests/test_bench_smoke.py runs it for seconds).

It starts the fake upstream (``claudestore fake-upstream``) and a gateway on SQLite (the test
configuration of tests/support/servers.py: models ``claude-test`` on an Anthropic-format
upstream and ``claude-via-openai`` on an OpenAI-format one; upstream idle timeout 2 s), makes
a customer account with a plan, credit, prices and a key (so limits and metering are on), then
sends traffic at a bounded rate (``--rps``, open loop) for ``--minutes``:

* both endpoints (``/v1/messages``, ``/v1/chat/completions``) x both models (pass-through and
  translated), streamed and not;
* clients that disconnect mid-stream; upstream faults through the fake upstream's knobs
  (``[[fake status=429|500|529]]``, ``cut_after``, ``stall_after`` past the idle timeout,
  ``error_after``); invalid requests (bad JSON, missing fields, unknown model) and, at most one
  every 10 s (below the failed-authentication throttle), a wrong key.

Every scenario has the outcomes it may end in; anything else is counted as unexpected. Every
``--sample-every`` seconds it records the gateway's RSS (VmRSS summed over the process and its
workers), its open file descriptors (``/proc/PID/fd``, same processes) and the ledger rows
(``SELECT count(*) FROM usage_records``), and every ``--table-every`` seconds prints a table
line. At the end it waits for the ledger to settle and checks it: the gateway writes exactly one
row per generation request that passed authentication, whatever its outcome, so the rows must
equal the requests sent with the customer key. Least-squares slopes of RSS (KB/min) and fds
(per minute) are fitted over the samples after ``--warmup`` seconds, and a Markdown summary is
written to ``--output`` (default bench/SOAK.md).

Pass: no unexpected outcome, no 5xx outside the upstream-fault scenarios, the ledger equal to
the requests, the gateway alive, and the fd slope within +-``--fd-slope-max`` per minute (when
at least ``--min-fit`` minutes of samples follow the warm-up). The RSS slope is reported, not judged.

Usage (from the repository root)::

    .venv/bin/python scripts/soak.py                       # 60 minutes at 50 requests/s
    .venv/bin/python scripts/soak.py --minutes 10 --rps 50
    .venv/bin/python scripts/soak.py --seconds 8 --rps 20 --sample-every 1 --table-every 2 \\
        --warmup 2 --output /tmp/SOAK.md                    # the smoke test's run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soak_mix import SCENARIOS, UPSTREAM_IDLE_S, Sample, Stats  # noqa: E402
from soak_report import HEAD, report, table_rows  # noqa: E402
from tests.support.servers import (  # noqa: E402  (the repository root is on sys.path only now)
    ADMIN_KEY,
    CLI,
    FakeUpstream,
    create_key,
    free_port,
    gateway_config,
    start_fake_upstream,
    stop,
    wait_http,
)

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MODELS = ("claude-test", "claude-via-openai")  # Anthropic-format and OpenAI-format upstreams
BAD_KEY_EVERY_S = 10.0  # wrong keys stay below the failed-authentication throttle (20 a minute)

# -- processes ---------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (uvicorn's worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [pid], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def ledger_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return int(conn.execute("SELECT count(*) FROM usage_records").fetchone()[0])


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str
    db: Path
    log: Path


def start_gateway(workdir: Path, upstream: FakeUpstream, workers: int) -> Gateway:
    """The test configuration (tests/support/servers.py), with short upstream idle timeouts."""
    db = workdir / "soak.db"
    config = gateway_config(upstream, f"sqlite+aiosqlite:///{db}")
    for up in config["upstreams"]:
        up["timeouts"] = {"idle": UPSTREAM_IDLE_S}
    config_path = workdir / "soak.yaml"
    config_path.write_text(yaml.safe_dump(config))
    create_key(config_path, "soak-operator")  # migrates the database, as an operator would first
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDESTORE_DATABASE_URL")}
    log = workdir / "gateway.log"
    command = [*CLI, "serve", "--config", str(config_path), "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning"]
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc, log)
    return Gateway(proc, url, db, log)


def make_customer(url: str) -> str:
    """Prices, a plan without limits, an account on it with ample credit, and its key."""

    def ok(resp: httpx.Response, status: int = 201) -> Any:
        assert resp.status_code == status, resp.text
        return resp.json()

    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as http:
        for model in MODELS:
            ok(http.put(f"/admin/prices/{model}", json={"input": "3", "output": "15"}))
        ok(http.post("/admin/plans", json={"name": "soak"}))
        account = ok(http.post("/admin/accounts", json={"name": "soak customer"}))
        base = f"/admin/accounts/{account['id']}"
        ok(http.post(f"{base}/subscription", json={"plan": "soak"}))
        ok(http.post(f"{base}/credit", json={"usd": "1000000"}))
        return str(ok(http.post(f"{base}/keys", json={"name": "soak"}))["key"])


# -- traffic -----------------------------------------------------------------------------------


@dataclass
class Request:
    scenario: str
    endpoint: str  # "anthropic" | "openai"
    model: str
    stream: bool
    key: str
    body: bytes
    disconnect_after: int | None = None  # SSE data lines read before leaving

    @property
    def path(self) -> str:
        return "/v1/messages" if self.endpoint == "anthropic" else "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.endpoint == "anthropic":
            headers |= {"x-api-key": self.key, "anthropic-version": "2023-06-01"}
        else:
            headers["authorization"] = f"Bearer {self.key}"
        return headers


def build(scenario: str, rng: random.Random, key: str) -> Request:
    endpoint = rng.choice(("anthropic", "openai"))
    model = rng.choice(MODELS)
    stream = rng.random() < 0.5
    knobs = f"tokens={rng.randint(1, 24)}"
    disconnect_after = None
    if scenario == "disconnect":
        stream, knobs = True, "tokens=60 delay_ms=40"
        disconnect_after = rng.randint(1, 4)
    elif scenario.startswith("status_"):
        knobs = f"status={scenario.removeprefix('status_')}"
    elif scenario == "cut":
        stream, knobs = True, f"tokens=20 cut_after={rng.randint(3, 8)}"
    elif scenario == "stall":
        stream, knobs = True, f"tokens=20 stall_after={rng.randint(3, 6)} stall_ms=4000"
    elif scenario == "error_after":
        stream, knobs = True, f"tokens=20 error_after={rng.randint(3, 8)}"
    elif scenario == "unknown_model":
        model = "no-such-model"
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": f"soak test [[fake {knobs}]]"}],
    }
    if endpoint == "openai" and stream:
        body["stream_options"] = {"include_usage": True}
    raw = json.dumps(body).encode()
    if scenario == "invalid_json":
        raw = raw[: rng.randint(1, len(raw) - 1)]
    elif scenario == "invalid_fields":
        body.pop("max_tokens" if endpoint == "anthropic" else "messages")
        body["messages" if endpoint == "anthropic" else "model"] = 42
        raw = json.dumps(body).encode()
    if scenario == "bad_key":
        key = "sk-cs-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(43))
    return Request(scenario, endpoint, model, stream, key, raw, disconnect_after)


def is_error_envelope(endpoint: str, body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if endpoint == "anthropic":
        return isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict)
    return isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]


async def read_stream(req: Request, resp: aiohttp.ClientResponse) -> str:
    data_lines = 0
    error = done = False
    async for line in resp.content:
        text = line.decode("utf-8", "replace").strip()
        if req.endpoint == "anthropic":
            if text == "event: message_stop":
                done = True
            elif text == "event: error":
                error = True
        elif text == "data: [DONE]":
            done = True
        elif text.startswith('data: {"error"'):
            error = True
        if text.startswith("data:"):
            data_lines += 1
            if req.disconnect_after is not None and data_lines >= req.disconnect_after:
                resp.close()  # leave mid-stream: the connection is closed under the gateway
                return "disconnect"
    if error:
        return "stream_error"
    return "ok" if done else "incomplete"


async def send_one(http: aiohttp.ClientSession, base: str, req: Request) -> str:
    async with http.post(base + req.path, data=req.body, headers=req.headers()) as resp:
        if resp.status >= 400:
            body = await resp.read()
            if not is_error_envelope(req.endpoint, body):
                return "bad_envelope"
            return "http_5xx" if resp.status >= 500 else "http_4xx"
        if req.stream:
            return await read_stream(req, resp)
        await resp.read()
        return "ok"


async def one(http: aiohttp.ClientSession, base: str, req: Request, stats: Stats) -> None:
    try:
        outcome = await send_one(http, base, req)
    except (aiohttp.ClientError, TimeoutError) as exc:
        outcome = "transport"
        if req.scenario != "bad_key":
            stats.uncertain += 1
        stats.unexpected.append(f"{req.scenario} {req.endpoint} {req.model}: {type(exc).__name__}: {exc}")
    stats.by_outcome[outcome] += 1
    stats.by_scenario[(req.scenario, outcome)] += 1
    if outcome not in SCENARIOS[req.scenario][1] and outcome != "transport":
        stats.unexpected.append(f"{req.scenario} {req.endpoint} {req.model} stream={req.stream}: {outcome}")


async def traffic(base: str, key: str, rps: float, seconds: float, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][0] for n in names]
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=512)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = start
        while loop.time() - start < seconds:
            scenario = rng.choices(names, weights)[0]
            if scenario == "bad_key":
                if time.monotonic() - stats.last_bad_key < BAD_KEY_EVERY_S:
                    scenario = "unknown_model"
                else:
                    stats.last_bad_key = time.monotonic()
            req = build(scenario, rng, key)
            if len(tasks) >= 400:
                stats.skipped += 1
            else:
                stats.sent += 1
                if scenario != "bad_key":
                    stats.metered += 1
                stats.by_route[f"{req.endpoint} -> {req.model}{' stream' if req.stream else ''}"] += 1
                task = asyncio.create_task(one(http, base, req, stats))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            tick += 1 / rps
            await asyncio.sleep(max(0.0, tick - loop.time()))
        if tasks:
            await asyncio.wait(tasks, timeout=90)


async def take_sample(gw: Gateway, stats: Stats, t: float) -> Sample:
    pids = tree(gw.proc.pid)
    rows = await asyncio.to_thread(ledger_rows, gw.db)
    return Sample(
        t=t,
        rss_kb=sum(rss_kb(p) for p in pids),
        fds=sum(fd_count(p) for p in pids),
        processes=len(pids),
        rows=rows,
        metered=stats.metered,
        outcomes=dict(stats.by_outcome),
    )


async def sampler(
    gw: Gateway, stats: Stats, every: float, samples: list[Sample], start: float, stop_at: float
) -> None:
    while True:
        samples.append(await take_sample(gw, stats, time.monotonic() - start))
        if time.monotonic() - start >= stop_at - every / 2:
            return
        await asyncio.sleep(max(0.0, every - (time.monotonic() - start) % every))


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="traffic duration (default 60)")
    parser.add_argument("--seconds", type=float, help="traffic duration in seconds (overrides --minutes)")
    parser.add_argument("--rps", type=float, default=50.0, help="offered requests per second (default 50)")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes (default 1)")
    parser.add_argument(
        "--sample-every", type=float, default=10.0, help="seconds between samples (default 10)"
    )
    parser.add_argument(
        "--table-every", type=float, default=60.0, help="seconds between table lines (default 60)"
    )
    parser.add_argument(
        "--warmup", type=float, default=120.0, help="seconds left out of the slopes (default 120)"
    )
    parser.add_argument(
        "--fd-slope-max", type=float, default=1.0, help="pass: |fd slope| per minute (default 1)"
    )
    parser.add_argument(
        "--min-fit",
        type=float,
        default=3.0,
        help="minutes after the warm-up to judge the fd slope (default 3)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "SOAK.md", help="Markdown summary")
    parser.add_argument("--workdir", type=Path, help="logs and the database (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=1, help="traffic mix seed (default 1)")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="claudestore-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = "scripts/soak.py " + shlex.join(sys.argv[1:])

    print(f"soak: {seconds:.0f} s at {args.rps:g} requests/s; work directory {workdir}", flush=True)
    upstream = start_fake_upstream(workdir)
    gw = None
    try:
        gw = start_gateway(workdir, upstream, args.workers)
        key = make_customer(gw.url)
        stats, samples = Stats(), []
        print("  " + " | ".join(HEAD), flush=True)

        async def run() -> None:
            start = time.monotonic()
            sampling = asyncio.create_task(sampler(gw, stats, args.sample_every, samples, start, seconds))
            printer = asyncio.create_task(print_progress(samples, args.table_every))
            await traffic(gw.url, key, args.rps, seconds, stats, args.seed)
            await sampling
            printer.cancel()
            await asyncio.sleep(1)  # the last requests' ledger rows
            samples.append(await take_sample(gw, stats, time.monotonic() - start))  # after the drain

        started = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - started
        # The ledger writer flushes every 50 ms; give it (and any retried batch) time to settle.
        deadline = time.monotonic() + 15
        rows = ledger_rows(gw.db)
        while rows < stats.metered and time.monotonic() < deadline:
            time.sleep(0.5)
            rows = ledger_rows(gw.db)
        alive = gw.proc.poll() is None
        return report(args, command, seconds, elapsed, stats, samples, rows, alive, workdir)
    finally:
        if gw is not None:
            stop(gw.proc)
        stop(upstream.proc)


async def print_progress(samples: list[Sample], every: float) -> None:
    shown = 0.0
    while True:
        await asyncio.sleep(1)
        if samples and samples[-1].t - shown >= every * 0.95:
            shown = samples[-1].t
            line = table_rows(samples, every)[-1]
            print("  " + " | ".join(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
