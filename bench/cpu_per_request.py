"""Gateway CPU time per request and RSS growth: figures that a busy machine hardly moves.

    .venv/bin/python bench/cpu_per_request.py                      # 5,000 JSON + 2,000 stream requests each
    .venv/bin/python bench/cpu_per_request.py --connections 16 --duration 8 --rounds 3   # saturated (wrk)
    .venv/bin/python bench/cpu_per_request.py --rss 20000          # also RSS growth over 20,000 requests
    .venv/bin/python bench/cpu_per_request.py --callgrind --json 300 --stream 200       # instructions
    .venv/bin/python bench/cpu_per_request.py --profile            # also a py-spy profile per measurement
    .venv/bin/python bench/cpu_per_request.py --pythonpath /tmp/before/src   # the gateway of another tree
    .venv/bin/python bench/cpu_per_request.py --accounting postgres-redis  # on PostgreSQL + Redis

Wall-clock latency on a shared 2-CPU machine moves with whatever else runs; the CPU time the
gateway process spends per request much less. This starts the fake upstream and one gateway
worker (``claudestore serve --workers 1``; SQLite, or with ``--accounting postgres-redis``
PostgreSQL and Redis) as bench/run.py does, makes an operator key
and a customer key (an account on a plan with every limit set, credit and prices, as
``run.py --accounting sqlite``), and for each scenario and key sends requests **one at a
time** (one keep-alive connection, a minimal blocking HTTP/1.1 client in this process), or
with ``--connections C`` (C > 1) through wrk for ``--duration`` seconds (the gateway
saturated: kernel and event-loop costs are shared by many requests, as in the throughput
figures of bench/run.py):

* ``off``: the operator key: key check (cached) and the ledger row only;
* ``on``: the customer key: key check, policy, limiter admission and settlement, cost
  reservation against the balance, pricing and the ledger row.

Around each measurement it reads ``utime`` and ``stime`` of the gateway's process tree from
``/proc/<pid>/stat`` and prints CPU µs per request (user + system; the median of
``--rounds`` rounds), the cost of accounting (on ÷ off - 1), and the growth of the gateway's
RSS per 1,000 requests. The idle gateway's CPU (background loops: ledger flush, credit
poller, key touches) is measured first and reported, not subtracted. ``--json-out`` writes
every figure.

With ``--rss N``, after the CPU runs, N more pass-through JSON requests (customer key) are
sent and RSS is sampled every 1,000 (with ``--rss-connections C`` > 1: by wrk, in 5 s
rounds): growth per 1,000 requests over the second half shows whether memory keeps growing
or levels off.

``--callgrind`` runs the gateway under ``valgrind --tool=callgrind`` (instrumentation off
until each measurement) and reports instructions executed per request (all threads, user
space): a count that other load does not move, at ~30x the run time, so use a few hundred
requests. The instructions of the idle gateway's background loops (measured first, per
second) are subtracted, and the ledger flushes every second instead of every 50 ms so that
its batches keep their full-speed size. Instructions are not time: cache misses, which
dominate a request that touches a little of everything, are not counted. The dumps stay in
the work directory for ``callgrind_annotate``.

``--pythonpath DIR`` runs the gateway (and its CLI) from another source tree, e.g. a copy of
``src/`` before a change, for an A/B comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import procs
import scenarios as sc
import yaml

BENCH_DIR = Path(__file__).resolve().parent

SCENARIOS = {
    "messages:claude-test": "/v1/messages → claude-test (pass-through)",
    "chat:claude-test": "/v1/chat/completions → claude-test (translated)",
    "chat:gpt-test": "/v1/chat/completions → gpt-test (pass-through)",
    "messages:gpt-test": "/v1/messages → gpt-test (translated)",
}
DEFAULT_SCENARIOS = ("messages:claude-test", "chat:claude-test")


class Client:
    """One keep-alive HTTP/1.1 connection, requests one at a time (blocking; tiny CPU cost)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        self.buf += data

    def _until(self, marker: bytes) -> bytes:
        while (i := self.buf.find(marker)) < 0:
            self._fill()
        out, self.buf = self.buf[:i], self.buf[i + len(marker) :]
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self, raw: bytes) -> tuple[int, bytes]:
        sock = self.sock or self._connect()
        sock.sendall(raw)
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")  # no trailers
                    break
                parts.append(self._exactly(size))
                self._exactly(2)
            body = b"".join(parts)
        else:
            raise RuntimeError(f"response without a length: {head}")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body


def raw_request(req: sc.HttpRequest) -> bytes:
    lines = [f"POST {req.path} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in req.headers.items()]
    lines.append(f"content-length: {len(req.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body


def stream_complete(body: bytes) -> bool:
    return b"message_stop" in body or b"[DONE]" in body


def run_requests(client: Client, raw: bytes, n: int, stream: bool) -> None:
    for _ in range(n):
        status, body = client.request(raw)
        if status != 200 or (stream and not stream_complete(body)):
            raise RuntimeError(f"HTTP {status}: {body[:300]!r}")


def rss_kb(pids: list[int]) -> int:
    return round(sum(procs.rss_mb(p) for p in pids) * 1024)


def start_gateway_callgrind(
    workdir: Path, config_path: Path, cpus: tuple[int, ...], key: str
) -> procs.Server:
    """``claudestore serve`` under callgrind, instrumentation off (switched on per measurement)."""
    port = procs.free_port()
    log = workdir / "gateway.log"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={workdir / 'callgrind.out.%p'}",
        *procs.CLI,
        "serve",
        "--config",
        str(config_path),
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]
    proc = procs._spawn(cmd, cpus, log, procs.gateway_env())
    server = procs.Server("claudestore", proc, port, log, key=key)
    server.wait_ready(timeout=600)
    return server


def idle_instructions(gateway: procs.Server, workdir: Path, seconds: float = 5.0) -> float:
    """Instructions per second of the idle gateway under callgrind (its background loops)."""
    pid = gateway.proc.pid
    before = set(workdir.glob(f"callgrind.out.{pid}.*"))
    callgrind(pid, "-z")
    callgrind(pid, "-i", "on")
    time.sleep(seconds)
    callgrind(pid, "-i", "off")
    callgrind(pid, "-d")
    return callgrind_totals(workdir, pid, before) / seconds


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def callgrind_totals(workdir: Path, pid: int, before: set[Path]) -> int:
    """Ir of the newest dump (``callgrind_control -d`` writes ``callgrind.out.PID.N``)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = set(workdir.glob(f"callgrind.out.{pid}.*")) - before
        for path in new:
            text = path.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.5)
    raise RuntimeError("callgrind wrote no dump")


class Spy:
    """``py-spy record`` of the gateway worker until stopped (SIGINT makes it write its output)."""

    def __init__(self, pid: int, out: Path, rate: int, native: bool = False) -> None:
        spy = str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            raise SystemExit(
                "py-spy is not installed: `.venv/bin/pip install py-spy` (a tool, not a dependency)"
            )
        self.out = out
        self.proc = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--threads"]
            + (["--native"] if native else ["--nonblocking"])
            + ["--output", str(out), "--duration", "3600"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=60)


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) of these processes, in seconds."""
    user = system = 0
    for pid in pids:
        fields = procs._stat_fields(pid)
        if fields:
            user += int(fields[11])
            system += int(fields[12])
    return user / procs.CLK_TCK, system / procs.CLK_TCK


class Load:
    """Sends one scenario's request: one at a time on one connection (``connections == 1``,
    ``n`` requests), or with wrk on ``connections`` connections (``n`` ignored: ``duration`` s)."""

    def __init__(
        self, args: argparse.Namespace, gateway: procs.Server, req: sc.HttpRequest, workdir: Path
    ) -> None:
        self.args, self.gateway, self.req, self.workdir = args, gateway, req, workdir
        self.connections = args.connections
        self.client = Client(gateway.port) if self.connections == 1 else None
        self.raw = raw_request(req)

    def run(self, n: int, duration: float) -> int:
        """Send the load; returns how many requests were answered."""
        if self.client is not None:
            run_requests(self.client, self.raw, n, self.req.stream)
            return n
        import wrk

        layout = procs.plan_layout(1, self.args.pin)
        r = wrk.run(
            self.gateway.url + self.req.path, self.req.headers, self.req.body, connections=self.connections,
            duration=duration, threads=1, cpus=layout.loadgen, workdir=self.workdir,
        )  # fmt: skip
        if r["errors"]:
            raise RuntimeError(f"wrk: {r['errors']} errors ({r})")
        return int(r["requests"])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def measure(load: Load, n: int, warmup: int, grind: Path | None = None) -> dict[str, float]:
    gateway = load.gateway
    pid = gateway.proc.pid
    duration = load.args.duration
    try:
        load.run(warmup, 1.0)
        tree = gateway.tree()
        if grind is not None:
            before = set(grind.glob(f"callgrind.out.{pid}.*"))
            callgrind(pid, "-z")
            callgrind(pid, "-i", "on")
        rss0, (user0, sys0), t0 = rss_kb(tree), cpu_split(tree), time.perf_counter()
        done = load.run(n, duration)
        (user1, sys1), t1 = cpu_split(tree), time.perf_counter()
        rss1 = rss_kb(tree)
        if grind is not None:
            callgrind(pid, "-i", "off")
            callgrind(pid, "-d")
    finally:
        load.close()
    fig = {
        "requests": done,
        "cpu_us": (user1 - user0 + sys1 - sys0) / done * 1e6,
        "user_us": (user1 - user0) / done * 1e6,
        "sys_us": (sys1 - sys0) / done * 1e6,
        "wall_us": (t1 - t0) / done * 1e6,
        "rss_kb_per_1k": (rss1 - rss0) / done * 1000,
        "rss_mb": rss1 / 1024,
    }
    if grind is not None:
        background = load.args.idle_ir_per_s * (t1 - t0)
        fig["kinstr"] = (callgrind_totals(grind, pid, before) - background) / done / 1000
    return fig


def rss_growth(
    args: argparse.Namespace, gateway: procs.Server, key: str, workdir: Path, layout: procs.Layout
) -> dict[str, Any]:
    """RSS while ``args.rss`` more pass-through JSON requests (customer key) are served: one at a
    time, sampled every 1,000; or with ``--rss-connections C`` > 1, by wrk in 5 s rounds."""
    req = sc.Scenario("messages", "claude-test", False).gateway_request(key)
    tree = gateway.tree()
    samples = [(0, rss_kb(tree))]
    if args.rss_connections > 1:
        import wrk

        done = 0
        while done < args.rss:
            r = wrk.run(
                gateway.url + req.path, req.headers, req.body, connections=args.rss_connections,
                duration=5, threads=1, cpus=layout.loadgen, workdir=workdir,
            )  # fmt: skip
            if r["errors"]:
                raise RuntimeError(f"wrk: {r['errors']} errors")
            done += r["requests"]
            time.sleep(0.5)
            samples.append((done, rss_kb(tree)))
    else:
        client = Client(gateway.port)
        try:
            for done in range(1000, args.rss + 1, 1000):
                run_requests(client, raw_request(req), 1000, False)
                samples.append((done, rss_kb(tree)))
        finally:
            client.close()
    half = samples[len(samples) // 2 :]
    growth = (half[-1][1] - half[0][1]) / max(1e-9, (half[-1][0] - half[0][0]) / 1000)
    total = (samples[-1][1] - samples[0][1]) / max(1e-9, samples[-1][0] / 1000)
    how = f"{args.rss_connections} connections (wrk)" if args.rss_connections > 1 else "one at a time"
    print(
        f"\nRSS over {samples[-1][0]:,} more requests (pass-through JSON, customer key, {how}): "
        f"{samples[0][1] / 1024:.1f} MB -> {samples[-1][1] / 1024:.1f} MB; {total:+.1f} KB per 1,000 "
        f"requests overall, {growth:+.1f} over the second half"
    )
    print("  samples (requests: MB): " + ", ".join(f"{n}: {kb / 1024:.1f}" for n, kb in samples))
    return {
        "rss_samples_kb": samples,
        "rss_growth_kb_per_1k": total,
        "rss_growth_kb_per_1k_second_half": growth,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=int, default=5000, help="non-streaming requests per measurement")
    p.add_argument("--stream", type=int, default=2000, help="streaming requests per measurement")
    p.add_argument("--warmup", type=int, default=300, help="requests before each measurement")
    p.add_argument(
        "--connections",
        type=int,
        default=1,
        help="1: requests one at a time (--json/--stream of them); C > 1: wrk with C connections for "
        "--duration s per measurement (the gateway saturated: the CPU cost of throughput)",
    )
    p.add_argument(
        "--duration", type=float, default=8.0, help="seconds per measurement with --connections > 1"
    )
    p.add_argument("--rounds", type=int, default=1, help="rounds; each figure is the median")
    p.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, of: {', '.join(SCENARIOS)}",
    )
    p.add_argument("--rss", type=int, default=0, help="then N more requests, RSS sampled every 1,000")
    p.add_argument(
        "--rss-connections",
        type=int,
        default=1,
        help="for --rss: load with wrk at C connections (5 s rounds)",
    )
    p.add_argument(
        "--pythonpath",
        help="run the gateway from this source tree (PYTHONPATH), e.g. a copy of src/ before a change",
    )
    p.add_argument("--profile", action="store_true", help="py-spy record each measurement (raw stacks)")
    p.add_argument("--profile-rate", type=int, default=500)
    p.add_argument(
        "--native",
        action="store_true",
        help="with --profile: native frames too (pauses the process to sample)",
    )
    p.add_argument(
        "--callgrind", action="store_true", help="gateway under callgrind: instructions per request"
    )
    p.add_argument(
        "--accounting",
        choices=("sqlite", "postgres-redis"),
        default="sqlite",
        help="the gateway on SQLite with in-process limits (default), or on PostgreSQL and Redis "
        "as bench/run.py --accounting postgres-redis (a fresh database, created and dropped)",
    )
    p.add_argument("--postgres-url", default=sc.BENCH_POSTGRES_URL)
    p.add_argument("--redis-url", default=sc.BENCH_REDIS_URL, help="FLUSHED at start (default db 13)")
    p.add_argument("--pin", choices=("auto", "none"), default="auto")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json-out", type=Path, help="write every figure here as JSON")
    args = p.parse_args()

    if args.pythonpath:
        os.environ["PYTHONPATH"] = str(Path(args.pythonpath).resolve())
    workdir = args.workdir or BENCH_DIR / "out" / f"cpu-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True, exist_ok=True)
    layout = procs.plan_layout(1, args.pin)
    if layout.loadgen:
        os.sched_setaffinity(0, layout.loadgen)
    procs.raise_fd_limit()

    database_url, pg_name = f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None
    if args.accounting == "postgres-redis":
        database_url, pg_name = procs.create_postgres_database(args.postgres_url)
        procs.flush_redis(args.redis_url)
    fake = procs.start_fake_upstream(workdir, layout.upstream)
    gateway = None
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    try:
        config = sc.merge(
            sc.gateway_config(fake.url, database_url),
            sc.accounting_overrides(args.accounting, database_url=database_url, redis_url=args.redis_url),
        )
        if args.callgrind:
            # ~30x slower under callgrind: a 1 s flush interval keeps ledger batches about the size
            # they have at full speed every 50 ms, so the per-flush work is shared as it is then.
            config["accounting"] = {"ledger_flush_interval": 1.0}
        config_path = workdir / "claudestore.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        with procs.CliSession(config_path, procs.gateway_env()) as cli:
            customer = sc.setup_accounting(cli)
        if args.callgrind:
            operator = procs.create_key(config_path, procs.gateway_env())
            gateway = start_gateway_callgrind(workdir, config_path, layout.gateway, operator)
        else:
            gateway = procs.start_gateway(workdir, config_path, 1, layout.gateway)
        keys = {"off": gateway.key, "on": customer}
        print(
            f"layout: {layout.describe()}; gateway pid {gateway.workers()[0]}; workdir {workdir}", flush=True
        )

        time.sleep(1.0)
        tree = gateway.tree()
        c0 = procs.cpu_seconds(tree)
        time.sleep(3.0)
        idle = (procs.cpu_seconds(tree) - c0) / 3.0
        results["idle_cpu_ms_per_s"] = idle * 1000
        print(f"idle gateway CPU: {idle * 1000:.1f} ms/s (background loops; not subtracted)", flush=True)
        if args.callgrind:
            args.idle_ir_per_s = idle_instructions(gateway, workdir)
            results["idle_kinstr_per_s"] = args.idle_ir_per_s / 1000
            print(
                f"idle gateway: {args.idle_ir_per_s / 1e6:.1f} M instructions/s under callgrind "
                "(background loops, which run per second, not per request: subtracted)",
                flush=True,
            )

        plan = [
            (name, stream, mode)
            for name in args.scenarios.split(",")
            for stream in (False, True)
            for mode in ("off", "on")
        ]
        figures: dict[tuple[str, bool, str], list[dict[str, float]]] = {k: [] for k in plan}
        for rnd in range(args.rounds):
            for name, stream, mode in plan:
                endpoint, model = name.split(":")
                req = sc.Scenario(endpoint, model, stream).gateway_request(keys[mode])
                n = args.stream if stream else args.json
                spy = None
                if args.profile:
                    tag = f"{endpoint}_{model}_{'stream' if stream else 'json'}_{mode}_r{rnd}"
                    spy = Spy(
                        gateway.workers()[0], workdir / f"py-spy-{tag}.txt", args.profile_rate, args.native
                    )
                try:
                    grind = workdir if args.callgrind else None
                    fig = measure(Load(args, gateway, req, workdir), n, args.warmup, grind)
                finally:
                    if spy is not None:
                        spy.stop()
                figures[(name, stream, mode)].append(fig)
                results["runs"].append({"scenario": name, "stream": stream, "accounting": mode, **fig})
                grind_text = f", {fig['kinstr']:,.0f} k instructions/request" if "kinstr" in fig else ""
                print(
                    f"  round {rnd + 1}: {SCENARIOS[name]}{' stream' if stream else ''}, accounting {mode}: "
                    f"{fig['cpu_us']:.0f} µs CPU/request ({fig['user_us']:.0f} user + {fig['sys_us']:.0f} "
                    f"system) over {fig['requests']:,} requests, {fig['wall_us']:.0f} µs wall, "
                    f"RSS {fig['rss_kb_per_1k']:+.0f} KB/1k{grind_text}",
                    flush=True,
                )

        print()
        metric, unit = ("kinstr", "k instr") if args.callgrind else ("cpu_us", "CPU µs")
        print(
            f"| scenario | {unit}/req off | {unit}/req on | accounting cost | user + system µs off "
            "| user + system µs on | wall µs/req off / on | RSS KB/1k off / on |"
        )
        print("|---|---|---|---|---|---|---|---|")
        summary = []
        keys = (
            "cpu_us",
            "user_us",
            "sys_us",
            "wall_us",
            "rss_kb_per_1k",
            *(("kinstr",) if args.callgrind else ()),
        )
        for name in args.scenarios.split(","):
            for stream in (False, True):
                med = {
                    mode: {k: statistics.median(f[k] for f in figures[(name, stream, mode)]) for k in keys}
                    for mode in ("off", "on")
                }
                off, on = med["off"], med["on"]
                cost = on[metric] / off[metric] - 1 if off[metric] else 0.0
                label = SCENARIOS[name] + (" stream" if stream else "")
                summary.append({"scenario": label, "off": off, "on": on, "accounting_cost": cost})
                print(
                    f"| {label} | {off[metric]:.0f} | {on[metric]:.0f} | {cost * 100:+.0f}% | "
                    f"{off['user_us']:.0f} + {off['sys_us']:.0f} | {on['user_us']:.0f} + {on['sys_us']:.0f} | "
                    f"{off['wall_us']:.0f} / {on['wall_us']:.0f} | "
                    f"{off['rss_kb_per_1k']:+.0f} / {on['rss_kb_per_1k']:+.0f} |"
                )
        results["summary"] = summary

        if args.rss:
            results.update(rss_growth(args, gateway, customer, workdir, layout))
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()
        if pg_name:
            procs.drop_postgres_database(args.postgres_url, pg_name)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
