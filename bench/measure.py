"""The measurements of bench/run.py: one ``Bench`` holds the load generators and measures a
target (saturation with CPU accounting, one connection, fixed rate, stream TTFB), two keys
alternated in rounds (``paired``), long streams and held streams."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import procs
import scenarios as sc
import wrk
from procs import Layout, Server

BENCH_DIR = Path(__file__).resolve().parent


class Bench:
    def __init__(self, args: argparse.Namespace, layout: Layout, workdir: Path) -> None:
        self.args, self.layout, self.workdir = args, layout, workdir
        self.use_wrk = args.loadgen == "wrk"
        self.threads = max(1, min(4, len(layout.loadgen) or (os.cpu_count() or 1)))

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # load generators -------------------------------------------------------------------------
    def start_loadgen(self) -> None:
        """The Python load generator: one long-lived process on the load generator's CPUs."""
        self._lg_log = (self.workdir / "loadgen.log").open("w")
        self._lg = subprocess.Popen(
            [
                *procs.pin_prefix(self.layout.loadgen),
                sys.executable,
                str(BENCH_DIR / "loadgen.py"),
                "--serve",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._lg_log,
            text=True,
        )

    def stop_loadgen(self) -> None:
        lg = getattr(self, "_lg", None)
        if lg is not None and lg.poll() is None:
            assert lg.stdin
            lg.stdin.close()
            try:
                lg.wait(10)
            except subprocess.TimeoutExpired:
                lg.kill()
                lg.wait()
        if getattr(self, "_lg_log", None):
            self._lg_log.close()

    def _send(self, message: str) -> None:
        assert self._lg.stdin
        self._lg.stdin.write(message + "\n")
        self._lg.stdin.flush()

    def _reply(self) -> str:
        assert self._lg.stdout
        line = self._lg.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited; see {self.workdir / 'loadgen.log'}")
        return line

    def loadgen(self, spec: dict[str, Any]) -> dict[str, Any]:
        self._send(json.dumps(spec))
        result = json.loads(self._reply())
        if "failed" in result:
            raise RuntimeError(f"load generator: {result['failed']}")
        result["tool"] = "loadgen"
        return result

    def closed(
        self, base: str, req: sc.HttpRequest, connections: int, duration: float, *, timeout: float = 60
    ) -> dict[str, Any]:
        if self.use_wrk:
            return wrk.run(
                base + req.path,
                req.headers,
                req.body,
                connections=connections,
                duration=duration,
                threads=self.threads,
                cpus=self.layout.loadgen,
                workdir=self.workdir,
                timeout=timeout,
            )
        spec = {"mode": "closed", **req.spec(base), "concurrency": connections, "duration": duration}
        spec["timeout"] = timeout
        return self.loadgen(spec)

    def settle(self, servers: dict[str, Server], timeout: float = 60.0) -> None:
        """Wait until the servers are idle again: a slow server still works through the requests
        queued when the load generator stopped, which would land in the next measurement."""
        deadline = time.monotonic() + timeout
        last = {name: s.cpu() for name, s in servers.items()}
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = {name: s.cpu() for name, s in servers.items()}
            if all(now[n] - last[n] < 0.25 * 0.1 for n in now):  # under 10% of a core
                return
            last = now
        self.log("servers still busy after the load stopped; measuring anyway")

    # one target ---------------------------------------------------------------------------------
    def probe(self, base: str, req: sc.HttpRequest) -> dict[str, Any]:
        """One request; fails loudly if the target does not answer 200 with a sane body."""
        r = urllib.request.Request(base + req.path, data=req.body, headers=req.headers, method="POST")
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                raw = resp.read()
                limits = {k.lower(): v for k, v in resp.headers.items() if "ratelimit" in k.lower()}
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{base}{req.path} answered {exc.code}: {exc.read()[:500]!r}") from None
        events = raw.count(b"\n\n") if req.stream else 0
        if req.stream and events < 3:
            raise RuntimeError(f"{base}{req.path}: a stream of {events} events: {raw[:300]!r}")
        # Rate-limit headers show that the limiter admitted the request (customer keys).
        return {"events_per_request": events, "bytes": len(raw), "ratelimit_headers": limits}

    def measure(
        self,
        label: str,
        base: str,
        req: sc.HttpRequest,
        accounted: dict[str, Server],
        *,
        fixed_rate: bool = True,
        ttft: bool = True,
        connections: int | None = None,
        duration: float | None = None,
        warmup: float | None = None,
        saturation: bool = True,
    ) -> dict[str, Any]:
        """Saturation (with CPU accounting), one connection, fixed rate, and stream TTFT."""
        a = self.args
        d = duration or a.duration
        conns = connections or a.connections
        self.log(f"{label}: probe + warm-up")
        res: dict[str, Any] = {"label": label, "url": base + req.path, "stream": req.stream}
        res["probe"] = self.probe(base, req)
        res["warmup"] = self.closed(base, req, min(8, conns), warmup or a.warmup)
        self.settle(accounted)

        if saturation:
            self.log(f"{label}: saturation, {conns} connections, {d:g} s")
            before = {name: s.cpu() for name, s in accounted.items()}
            sat = self.closed(base, req, conns, d)
            cpu = {name: s.cpu() - before[name] for name, s in accounted.items()}
            done = max(1, sat["requests"])
            sat["cpu_s_per_1k"] = {name: c / done * 1000 for name, c in cpu.items()}
            sat["cpu_util"] = {name: c / sat["elapsed_s"] for name, c in cpu.items()}
            res["saturation"] = sat
            self.settle(accounted)

        self.log(f"{label}: one connection, {d:g} s")
        res["one_conn"] = self.closed(base, req, 1, d)

        if fixed_rate:
            self.log(f"{label}: fixed rate {a.rate:g} req/s, {d:g} s")
            res["rate"] = self.loadgen({"mode": "rate", **req.spec(base), "rate": a.rate, "duration": d})
        if req.stream and ttft:
            self.log(f"{label}: stream TTFT, one connection, {d:g} s")
            res["ttft"] = self.loadgen({"mode": "closed", **req.spec(base), "concurrency": 1, "duration": d})
        errs = sum(res[k]["errors"] for k in ("saturation", "one_conn", "rate", "ttft") if k in res)
        res["errors"] = errs
        return res

    def paired(
        self,
        label: str,
        base: str,
        reqs: dict[str, sc.HttpRequest],
        accounted: dict[str, Server],
        rounds: int = 32,
    ) -> dict[str, Any]:
        """Saturation runs of two requests alternated A B, B A, A B, B A, ... (``rounds`` rounds of
        2 / ``rounds`` of the usual duration each: twice the usual time per request in all), so
        that a drift in the machine's background load hits both alike; per round the
        second's throughput cost against the first (1 - its req/s / the first's) and the cost its
        CPU per request implies (1 - the first's CPU / its CPU); the figures are the medians over
        the rounds, with their range, and the means of req/s and CPU s / 1k."""
        a = self.args
        duration = a.duration if rounds == 1 else a.duration * 2 / rounds
        names = list(reqs)
        runs: dict[str, list[dict[str, float]]] = {who: [] for who in names}
        for i in range(rounds):
            for who in names if i % 2 == 0 else names[::-1]:
                self.log(f"{label}: {who} key, saturation {i + 1}/{rounds}, {a.connections} connections")
                before = accounted["gateway"].cpu()
                sat = self.closed(base, reqs[who], a.connections, duration)
                cpu = accounted["gateway"].cpu() - before
                runs[who].append(
                    {
                        "rps": sat["rps"],
                        "cpu_s_per_1k": cpu / max(1, sat["requests"]) * 1000,
                        "errors": sat["errors"],
                        "requests": sat["requests"],
                    }
                )
                self.settle(accounted)
        out: dict[str, Any] = {"rounds": runs, "duration_s": duration}
        for who, rs in runs.items():
            out[who] = {k: sum(r[k] for r in rs) / len(rs) for k in ("rps", "cpu_s_per_1k")}
            out[who]["errors"] = sum(r["errors"] for r in rs)
        if len(names) == 2:
            first, second = (runs[n] for n in names)
            pairs = [(x, y) for x, y in zip(first, second, strict=True) if x["rps"] and y["cpu_s_per_1k"]]
        if len(names) == 2 and pairs:
            out["cost"] = _spread([1 - y["rps"] / x["rps"] for x, y in pairs])
            out["cpu_cost"] = _spread([1 - x["cpu_s_per_1k"] / y["cpu_s_per_1k"] for x, y in pairs])
        return out

    def long_stream(
        self, label: str, base: str, req: sc.HttpRequest, accounted: dict[str, Server]
    ) -> dict[str, Any]:
        """Events per second relayed with long streams (the fake writes each in one piece)."""
        a = self.args
        self.log(f"{label}: long streams, 8 connections, {a.duration:g} s")
        probe = self.probe(base, req)
        warm = self.closed(base, req, 4, a.warmup, timeout=120)
        before = {name: s.cpu() for name, s in accounted.items()}
        sat = self.closed(base, req, 8, a.duration, timeout=120)
        cpu = {name: s.cpu() - before[name] for name, s in accounted.items()}
        sat["cpu_util"] = {name: c / sat["elapsed_s"] for name, c in cpu.items()}
        self.settle(accounted)
        sat["events_per_request"] = probe["events_per_request"]
        sat["warmup_requests"] = warm["requests"]
        sat["events_per_s"] = sat["rps"] * probe["events_per_request"]
        return sat

    def hold_streams(self, server: Server, req: sc.HttpRequest, count: int) -> dict[str, Any]:
        """Open ``count`` slow streams through ``server``, read its RSS while they are open."""
        self.log(f"{server.name}: holding {count} open streams")
        self._send(json.dumps({**req.spec(server.url), "mode": "hold", "count": count, "timeout": 120}))
        line = self._reply()
        if not line.startswith("READY "):
            raise RuntimeError(f"hold: {line.strip()}")
        ready = json.loads(line[len("READY ") :])
        samples = []
        for _ in range(2 if self.args.smoke else 5):
            samples.append(server.rss())
            time.sleep(0.2)
        rss = max(samples, key=lambda s: s["total"])
        self._send("release")
        final = json.loads(self._reply())
        return {
            "requested": count,
            **ready,
            "still_open_at_stop": final.get("still_open_at_stop"),
            "rss": rss,
        }


def _spread(values: list[float]) -> dict[str, float]:
    """Median, lowest and highest of per-round figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
