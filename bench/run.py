"""ClaudeStore benchmark harness (issue 7). See bench/README.md for what each figure means.

    .venv/bin/python bench/run.py                 # full run (10 s per measurement), writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick         # 2 s per measurement
    .venv/bin/python bench/run.py --litellm       # also LiteLLM's proxy, side by side
    .venv/bin/python bench/run.py --workers 2     # gateway worker processes
    .venv/bin/python bench/run.py --accounting sqlite   # also a customer key: limits, pricing, balance
    .venv/bin/python bench/run.py --smoke --output /tmp/r.md   # tiny run, Python load generator only

It starts the fake upstream and the gateway as separate processes (pinned to CPUs when
there are enough), loads them from separate load-generator processes (wrk, and
bench/loadgen.py for stream timing, fixed rates and held streams), measures every
scenario directly against the fake first (the baseline) and then through the gateway,
and writes a Markdown report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import procs
import report
import scenarios as sc
import services
import wrk
import yaml
from measure import Bench
from procs import Server

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# LiteLLM answers in tens of milliseconds; a window of a few seconds holds too few responses.
LITELLM_MIN_DURATION = 6.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 s per measurement instead of 10 s")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="smallest run: one scenario, 0.3 s, tiny load, Python load generator only (used by the test suite)",
    )
    p.add_argument("--duration", type=float, help="seconds per measurement (default 10; --quick 2)")
    p.add_argument(
        "--workers", type=int, default=1, help="gateway (and LiteLLM) worker processes (default 1)"
    )
    p.add_argument("--connections", type=int, help="connections for the saturation runs (default 64)")
    p.add_argument(
        "--rate", type=float, help="offered load in req/s for the fixed-rate latency run (default 500)"
    )
    p.add_argument("--streams", type=int, help="streams held open for the RSS measurement (default 1000)")
    p.add_argument("--litellm", action="store_true", help="also run LiteLLM's proxy side by side")
    p.add_argument(
        "--litellm-connections",
        type=int,
        default=16,
        help="connections for LiteLLM's saturation runs (default 16: more only queue, see README)",
    )
    p.add_argument(
        "--accounting",
        choices=sc.ACCOUNTING_MODES,
        default="off",
        help="also measure every scenario with a customer key (account, plan with every limit, "
        "credit, prices) against the operator key; postgres-redis runs the gateway on PostgreSQL "
        "and Redis instead of SQLite and in-process limits (see README)",
    )
    p.add_argument(
        "--accounting-rounds",
        type=int,
        default=32,
        help="rounds of the two keys alternated per scenario (default 32), each 2 / rounds of "
        "--duration: more, shorter rounds follow a drifting machine more closely",
    )
    p.add_argument(
        "--postgres-url",
        default=sc.BENCH_POSTGRES_URL,
        help="PostgreSQL server for --accounting postgres-redis (a fresh database is created and dropped)",
    )
    p.add_argument(
        "--redis-url",
        default=sc.BENCH_REDIS_URL,
        help="Redis database for --accounting postgres-redis (FLUSHED at start; default db 13)",
    )
    p.add_argument(
        "--loadgen",
        choices=("wrk", "python"),
        help="saturation / one-connection load generator (default wrk; --smoke: python)",
    )
    p.add_argument("--pin", choices=("auto", "none"), default="auto", help="CPU pinning (default auto)")
    p.add_argument("--only", help="run only scenarios whose key matches this regular expression")
    p.add_argument("--no-long", action="store_true", help="skip the long-stream (events/s) runs")
    p.add_argument("--no-hold", action="store_true", help="skip the open-streams RSS run")
    p.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md", help="Markdown report path")
    p.add_argument("--workdir", type=Path, help="logs, configs and results.json (default bench/out/<time>)")
    args = p.parse_args(argv)
    if args.smoke:
        args.duration = args.duration or 0.3
        args.connections = args.connections or 4
        args.rate = args.rate or 50.0
        args.streams = args.streams or 10
        args.loadgen = args.loadgen or "python"
        args.no_long = True
        args.warmup = 0.1
        args.pause = 0.1
    else:
        args.duration = args.duration or (2.0 if args.quick else 10.0)
        args.warmup = 1.0
        args.pause = 1.0  # before reading RSS: let the servers settle
    args.connections = args.connections or 64
    args.rate = args.rate or 500.0
    args.streams = args.streams if args.streams is not None else 1000
    args.loadgen = args.loadgen or "wrk"
    return args


# -- environment -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" (with uncommitted changes)" if dirty else "")


def gateway_sections() -> list[str]:
    """The top-level sections of the gateway's configuration (shows whether this build has
    limits/accounting, which then run with their defaults in every figure)."""
    import msgspec

    from claudestore.config import Config

    return [f.name for f in msgspec.structs.fields(Config)]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    workdir = args.workdir or BENCH_DIR / "out" / started.strftime("%Y%m%d-%H%M%S")
    # Refuse before starting anything: a missing wrk, an accounting mode this build can't run.
    sqlite_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    pg_placeholder = "postgresql+asyncpg://postgres@127.0.0.1:5432/placeholder"
    config = sc.merge(
        sc.gateway_config("http://127.0.0.1:0", sqlite_url),
        sc.accounting_overrides(args.accounting, database_url=pg_placeholder, redis_url=args.redis_url),
    )
    problem = sc.check_accounting(config, args.accounting)
    if problem:
        raise SystemExit(problem)
    if args.loadgen == "wrk" and not wrk.available():
        raise SystemExit(wrk.INSTALL_HINT)
    workdir.mkdir(parents=True, exist_ok=True)

    fd_limit = procs.raise_fd_limit()
    layout = procs.plan_layout(args.workers, args.pin)
    bench = Bench(args, layout, workdir)
    results: dict[str, Any] = {
        "meta": {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(shlex.quote(a) for a in ["bench/run.py", *sys.argv[1:]]),
            "commit": git_commit(),
            "machine": machine(),
            "layout": layout.describe(),
            "loadavg_start": loadavg(),
            "loadgen": f"wrk ({wrk.version()})" if bench.use_wrk else "bench/loadgen.py (Python)",
            "workers": args.workers,
            "duration_s": args.duration,
            "connections": args.connections,
            "rate": args.rate,
            "accounting": args.accounting,
            "config_sections": gateway_sections(),
            "fd_limit": fd_limit,
            "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
        },
        "targets": {},
        "scenarios": [],
        "long": {},
    }
    bench.log(f"work directory {workdir}; {layout.describe()}")

    only = re.compile(args.only) if args.only else None
    main = sc.main_scenarios()
    if args.smoke:
        main = main[:1]
    if only:
        main = [s for s in main if only.search(s.key)]

    database_url, pg_name = sqlite_url, None
    pinned: services.PinnedServices | None = None
    if args.accounting == "postgres-redis":
        database_url, pg_name = procs.create_postgres_database(args.postgres_url)
        procs.flush_redis(args.redis_url)
        bench.log(f"PostgreSQL database {pg_name}, Redis {args.redis_url} (flushed)")
    bench.start_loadgen()
    fake = procs.start_fake_upstream(workdir, layout.upstream, wait=False)
    gateway: Server | None = None
    try:
        if pg_name:  # PostgreSQL and Redis off the gateway's CPUs, like the fake upstream
            pinned = services.pin_accounting_services(layout.loadgen, args.postgres_url, args.redis_url)
            results["meta"]["services"] = pinned.describe()
            bench.log(results["meta"]["services"])
        config = sc.merge(
            sc.gateway_config(fake.url, database_url),
            sc.accounting_overrides(args.accounting, database_url=database_url, redis_url=args.redis_url),
        )
        config_path = workdir / "claudestore.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        customer_key = None
        with procs.CliSession(config_path, procs.gateway_env()) as cli:  # one interpreter for all
            cli("migrate")
            operator_key = procs.KEY_PATTERN.search(cli("keys", "create", "bench-operator"))
            if args.accounting != "off":
                bench.log("making a customer key: account, plan with every limit, credit, prices")
                customer_key = sc.setup_accounting(cli)
        assert operator_key, "no key in `claudestore keys create` output"
        gateway = procs.start_gateway(
            workdir, config_path, args.workers, layout.gateway, key=operator_key.group(0)
        )
        fake.wait_ready()
        time.sleep(args.pause)
        results["memory"] = {"gateway_start": gateway.rss(), "upstream_start": fake.rss()}
        both = {"gateway": gateway, "upstream": fake}
        only_fake = {"upstream": fake}

        for stream in (False, True):
            group = [s for s in main if s.stream is stream]
            for s in group:  # the baselines first
                if s.baseline_key not in results["targets"]:
                    results["targets"][s.baseline_key] = bench.measure(
                        s.baseline_key, fake.url, s.direct_request(), only_fake
                    )
            for s in group:
                results["targets"][s.key] = bench.measure(
                    s.key, gateway.url, s.gateway_request(gateway.key), both
                )
                results["scenarios"].append(
                    {
                        "key": s.key,
                        "name": s.name,
                        "stream": s.stream,
                        "translated": s.translated,
                        "baseline": s.baseline_key,
                        "baseline_name": s.baseline_name,
                    }
                )

        if customer_key is not None:
            results["accounting"] = {"mode": args.accounting, "targets": {}}
            for s in main:
                label = f"accounting:{s.key}"
                customer = s.gateway_request(customer_key)
                # saturation: in the alternated runs below
                res = bench.measure(
                    label, gateway.url, customer, both, fixed_rate=False, ttft=False, saturation=False
                )
                reqs = {"operator": s.gateway_request(gateway.key), "customer": customer}
                res["paired"] = bench.paired(label, gateway.url, reqs, both, rounds=1 if args.smoke else args.accounting_rounds)
                res["errors"] += res["paired"]["customer"]["errors"]
                results["accounting"]["targets"][s.key] = res

        if not args.no_long:
            longs = sc.long_stream_scenarios()
            if only:
                longs = [s for s in longs if only.search(s.key)]
            for s in longs:
                if s.baseline_key not in results["long"]:
                    results["long"][s.baseline_key] = {
                        "name": s.baseline_name,
                        **bench.long_stream(s.baseline_key, fake.url, s.direct_request(), only_fake),
                    }
            for s in longs:
                results["long"][s.key] = {
                    "name": s.name,
                    "baseline": s.baseline_key,
                    "translated": s.translated,
                    **bench.long_stream(s.key, gateway.url, s.gateway_request(gateway.key), both),
                }

        time.sleep(args.pause)
        results["memory"]["gateway_idle_after_load"] = gateway.rss()
        results["memory"]["gateway_requests_served"] = requests_served(results)
        if not args.no_hold and args.streams > 0:
            hold = sc.Scenario("messages", "claude-test", True, "-slow")
            results["memory"]["hold"] = {
                "scenario": hold.name,
                **bench.hold_streams(gateway, hold.gateway_request(gateway.key), args.streams),
            }
        gateway.stop()
        gateway = None

        if args.litellm:
            results["litellm"] = run_litellm(bench, fake, workdir, results)
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()
        bench.stop_loadgen()
        if pinned is not None:
            pinned.restore()
        if pg_name:
            procs.drop_postgres_database(args.postgres_url, pg_name)

    results["meta"]["loadavg_end"] = loadavg()
    results["meta"]["elapsed_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds())
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def requests_served(results: dict[str, Any]) -> int:
    """Requests the gateway answered so far (every phase of every gateway target, probes included)."""
    total = 0
    gateway_targets = [v for k, v in results["targets"].items() if not k.startswith("direct")]
    gateway_targets += list((results.get("accounting") or {}).get("targets", {}).values())
    for t in gateway_targets:
        total += 1 + sum(
            t[k]["requests"] for k in ("warmup", "saturation", "one_conn", "rate", "ttft") if k in t
        )
        for rnd in (t.get("paired") or {}).get("rounds", {}).values():
            total += sum(int(r.get("requests", 0)) for r in rnd)
    for k, v in results.get("long", {}).items():
        if not k.startswith("direct"):
            total += 1 + v["requests"] + v.get("warmup_requests", 0)
    return total


def run_litellm(bench: Bench, fake: Server, workdir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's proxy on the same CPUs, same fake, same client requests."""
    args = bench.args
    out: dict[str, Any] = {"targets": {}}
    try:
        exe = procs.ensure_litellm_venv(workdir / "litellm-install.log")
    except Exception as exc:
        out["error"] = f"could not install litellm[proxy] into {procs.LITELLM_VENV}: {exc}"
        return out
    out["version"] = procs.litellm_version()
    out["connections"] = args.litellm_connections
    out["duration_s"] = max(args.duration, LITELLM_MIN_DURATION)
    config_path = workdir / "litellm.yaml"
    config_path.write_text(yaml.safe_dump(sc.litellm_config(fake.url), sort_keys=False))
    bench.log(f"starting LiteLLM {out['version']} proxy")
    try:
        server = procs.start_litellm(workdir, config_path, args.workers, bench.layout.gateway, exe)
    except Exception as exc:
        out["error"] = f"LiteLLM's proxy did not start: {exc}"
        return out
    try:
        time.sleep(args.pause)
        out["rss_start"] = server.rss()
        accounted = {"gateway": server, "upstream": fake}
        for s in sc.litellm_scenarios():
            if args.only and not re.search(args.only, s.key):
                continue
            label = f"litellm:{s.key}"
            try:
                out["targets"][s.key] = {
                    "name": s.name,
                    "baseline": s.baseline_key,
                    **bench.measure(
                        label,
                        server.url,
                        s.litellm_request(),
                        accounted,
                        fixed_rate=False,
                        connections=args.litellm_connections,
                        duration=max(args.duration, LITELLM_MIN_DURATION),
                        warmup=max(args.warmup, 2.0),
                    ),
                }
            except Exception as exc:
                out["targets"][s.key] = {"name": s.name, "error": str(exc)[:500]}
                bench.log(f"{label}: failed: {exc}")
        time.sleep(args.pause)
        out["rss_after_load"] = server.rss()
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    text = report.render(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print()
    print(text)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
