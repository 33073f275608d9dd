"""Profile the gateway's hot path under load with py-spy (not part of the benchmark run).

    .venv/bin/pip install py-spy      # a tool for you, not a dependency of the package
    .venv/bin/python bench/profile_hotpath.py --scenario messages:claude-test:json
    .venv/bin/python bench/profile_hotpath.py --scenario messages:gpt-test:stream --duration 10 --top 20

It starts the fake upstream and one gateway worker as bench/run.py does, loads one scenario
with wrk (16 connections), samples the worker with ``py-spy record --format raw`` meanwhile,
and prints, for the event-loop thread, the frames with the most self time (the leaf of each
sampled stack) and the ClaudeStore functions with the most inclusive time, then the share of
the other threads (aiosqlite's worker). Raw stacks are kept in the work
directory for flame graphs (``py-spy``'s raw format is the folded-stack format).
Scenario keys: ``ENDPOINT:MODEL:json|stream`` with ENDPOINT ``messages`` or ``chat`` and
MODEL ``claude-test``, ``gpt-test`` (or their ``-long`` variants).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import procs
import scenarios as sc
import wrk
import yaml

BENCH_DIR = Path(__file__).resolve().parent


def find_scenario(key: str) -> sc.Scenario:
    endpoint, model, kind = key.split(":")
    variant = ""
    for suffix in ("-long", "-slow"):
        if model.endswith(suffix):
            model, variant = model[: -len(suffix)], suffix
    return sc.Scenario(endpoint, model, kind == "stream", variant)


def folded(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            out.append((stack.split(";"), int(n)))
    return out


def summarize(stacks: list[tuple[list[str], int]], top: int) -> str:
    """Self time per frame on the event-loop thread, then what the other threads did.

    Stacks come from ``py-spy record --threads``: the first frame names the thread. Samples of
    a thread blocked in a queue ``get`` (aiosqlite's idle worker) are idle, not work, and left out.
    """
    by_thread: dict[str, list[tuple[list[str], int]]] = {}
    for frames, n in stacks:
        thread, rest = (frames[0], frames[1:]) if frames[0].startswith("thread ") else ("thread ?", frames)
        if rest:
            by_thread.setdefault(thread, []).append((rest, n))
    if not by_thread:
        return "no samples"

    def is_main(item: tuple[str, list[tuple[list[str], int]]]) -> bool:
        return any("Runner.run" in f for frames, _ in item[1] for f in frames[:12])

    main_thread = max(by_thread.items(), key=lambda kv: (is_main(kv), sum(n for _, n in kv[1])))[0]
    idle = ("_connection_worker_thread (aiosqlite/core.py:59)",)
    total = sum(n for frames, n in stacks if frames[-1] not in idle) or 1
    lines = [f"{total} busy samples (all threads)"]
    for thread, items in sorted(by_thread.items(), key=lambda kv: kv[0] != main_thread):
        busy = [(f, n) for f, n in items if f[-1] not in idle]
        count = sum(n for _, n in busy)
        if not count:
            continue
        self_time: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        for frames, n in busy:
            self_time[frames[-1]] += n
            for frame in set(frames):
                if "claudestore/" in frame and "cli/main.py" not in frame:
                    inclusive[frame] += n
        role = "event loop" if thread == main_thread else "other"
        lines += ["", f"{thread} ({role}): {count / total * 100:.1f}% of busy samples"]
        shown = top if thread == main_thread else min(5, top)
        lines += [f"  top {shown} frames by self time (% of all busy samples):"]
        lines += [f"    {n / total * 100:5.1f}%  {frame}" for frame, n in self_time.most_common(shown)]
        if thread == main_thread:
            lines += [f"  top {top} ClaudeStore functions by inclusive time:"]
            lines += [f"    {n / total * 100:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _setup_accounting(config_path: Path) -> str:
    with procs.CliSession(config_path, procs.gateway_env()) as cli:
        return sc.setup_accounting(cli)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="messages:claude-test:json")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--workdir", type=Path)
    p.add_argument(
        "--accounting",
        choices=sc.ACCOUNTING_MODES,
        default="off",
        help="off: the operator key; sqlite / postgres-redis: a customer key (account, plan, credit) as "
        "in run.py --accounting",
    )
    p.add_argument("--postgres-url", default=sc.BENCH_POSTGRES_URL)
    p.add_argument("--redis-url", default=sc.BENCH_REDIS_URL, help="FLUSHED at start")
    args = p.parse_args()

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: `.venv/bin/pip install py-spy` (a tool, not a dependency)")
    if not wrk.available():
        raise SystemExit(wrk.INSTALL_HINT)
    scenario = find_scenario(args.scenario)
    workdir = args.workdir or BENCH_DIR / "out" / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True, exist_ok=True)
    layout = procs.plan_layout(1)
    procs.raise_fd_limit()

    database_url, pg_name = f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None
    if args.accounting == "postgres-redis":
        database_url, pg_name = procs.create_postgres_database(args.postgres_url)
        procs.flush_redis(args.redis_url)
    fake = procs.start_fake_upstream(workdir, layout.upstream, wait=False)
    gateway = None
    try:
        config = sc.merge(
            sc.gateway_config(fake.url, database_url),
            sc.accounting_overrides(args.accounting, database_url=database_url, redis_url=args.redis_url),
        )
        config_path = workdir / "claudestore.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        key = None
        if args.accounting != "off":
            key = _setup_accounting(config_path)
        gateway = procs.start_gateway(workdir, config_path, 1, layout.gateway)
        fake.wait_ready()
        req = scenario.gateway_request(key or gateway.key)
        url = gateway.url + req.path
        run = dict(threads=1, cpus=layout.loadgen, workdir=workdir)
        wrk.run(url, req.headers, req.body, connections=args.connections, duration=1, **run)  # warm-up
        raw = workdir / f"py-spy-{args.scenario.replace(':', '_')}.txt"
        sampler = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(gateway.workers()[0]),
                "--rate",
                str(args.rate),
                "--duration",
                str(round(args.duration)),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
                "--threads",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        result = wrk.run(
            url, req.headers, req.body, connections=args.connections, duration=args.duration, **run
        )
        _, err = sampler.communicate(timeout=60)
        if not raw.exists():
            raise SystemExit(f"py-spy wrote nothing: {err}")
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()
        if pg_name:
            procs.drop_postgres_database(args.postgres_url, pg_name)

    print(
        f"{scenario.name}{' stream' if scenario.stream else ''}, --accounting {args.accounting}: "
        f"{result['rps']:,.0f} req/s at "
        f"{args.connections} connections, {result['errors']} errors (under py-spy's sampling)"
    )
    print(summarize(folded(raw), args.top))
    print(f"\nraw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
