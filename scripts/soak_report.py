"""The soak test's Markdown summary and progress table (scripts/soak.py runs the traffic and
calls ``report``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path

from soak_mix import SCENARIOS, UPSTREAM_FAULTS, UPSTREAM_IDLE_S, Sample, Stats

ROOT = Path(__file__).resolve().parent.parent


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] / 60 for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


OUTCOMES = (
    "ok",
    "stream_error",
    "http_4xx",
    "http_5xx",
    "disconnect",
    "incomplete",
    "bad_envelope",
    "transport",
)


def table_rows(samples: list[Sample], table_every: float) -> list[list[str]]:
    rows, last, prev = [], -1.0, None
    for s in samples:
        # A sample a little early (the sampler's own jitter) still closes its interval.
        if prev is not None and s.t - last < table_every * 0.95 and s is not samples[-1]:
            continue
        before = prev.outcomes if prev else {}
        done = {o: s.outcomes.get(o, 0) - before.get(o, 0) for o in OUTCOMES}
        rows.append(
            [
                f"{int(s.t // 60)}:{int(s.t % 60):02d}",
                str(sum(done.values())),
                *(str(done[o]) for o in OUTCOMES),
                f"{s.rss_kb / 1024:.1f}",
                str(s.fds),
                str(s.rows),
                str(s.metered),
            ]
        )
        last, prev = s.t, s
    return rows


HEAD = ["time", "done", *OUTCOMES, "RSS MB", "fds", "ledger rows", "metered sent"]


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem_kb / 1024 / 1024:.1f} GB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}; shared with other work (load average at start "
        f"{os.getloadavg()[0]:.2f})"
    )


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def report(
    args: argparse.Namespace,
    command: str,
    seconds: float,
    elapsed: float,
    stats: Stats,
    samples: list[Sample],
    rows: int,
    alive: bool,
    workdir: Path,
) -> int:
    # Fitted over the samples after the warm-up, while the traffic ran (not the drained end).
    after = [s for s in samples[:-1] if s.t >= args.warmup]
    rss_slope = slope_per_min([(s.t, s.rss_kb) for s in after])
    fd_slope = slope_per_min([(s.t, s.fds) for s in after])
    judged = len(after) >= 3 and after[-1].t - after[0].t >= args.min_fit * 60
    expected_low = stats.metered - stats.uncertain
    ledger_ok = expected_low <= rows <= stats.metered
    unexpected_5xx = sum(
        n
        for (scenario, outcome), n in stats.by_scenario.items()
        if outcome == "http_5xx" and scenario not in UPSTREAM_FAULTS
    )
    checks = {
        "no unexpected outcome": not stats.unexpected,
        "no 5xx outside the upstream-fault scenarios": unexpected_5xx == 0,
        "ledger rows = requests sent with the customer key": ledger_ok,
        "gateway alive at the end": alive,
        f"fd slope within +-{args.fd_slope_max:g} per minute"
        + ("" if judged else f" (not judged: under {args.min_fit:g} min of samples after the warm-up)"): (
            not judged or (fd_slope is not None and abs(fd_slope) <= args.fd_slope_max)
        ),
    }
    passed = all(checks.values())
    first, last = (samples[0], samples[-1]) if samples else (None, None)

    def fmt(value: float | None, unit: str) -> str:
        return "n/a (fewer than 3 samples after the warm-up)" if value is None else f"{value:+.1f} {unit}"

    lines = [
        "# ClaudeStore soak test",
        "",
        f"- **Command**: `{command}`",
        f"- **Commit**: {git_commit()}",
        f"- **Machine**: {machine()}",
        f"- **Run**: {seconds / 60:.1f} min of traffic at {args.rps:g} requests/s offered "
        f"({elapsed:.0f} s wall), gateway with {args.workers} worker(s) on SQLite, fake upstream "
        f"with idle timeout {UPSTREAM_IDLE_S:g} s; samples every {args.sample_every:g} s, slopes after "
        f"{args.warmup / 60:.1f} min of warm-up",
        f"- **Verdict**: {'PASS' if passed else 'FAIL'}",
        "",
        "## Criteria",
        "",
        *(f"- [{'x' if ok else ' '}] {name}" for name, ok in checks.items()),
        "",
        "## Figures",
        "",
        f"- Requests: {stats.sent} sent ({stats.skipped} not sent: too many in flight), "
        f"{stats.metered} with the customer key",
        f"- Ledger: {rows} rows for {stats.metered} metered requests"
        + (f" ({stats.uncertain} ended by a client-side error)" if stats.uncertain else ""),
        f"- Gateway RSS (sum over {last.processes if last else '?'} process(es)): "
        f"{first.rss_kb / 1024 if first else 0:.1f} MB at start, {last.rss_kb / 1024 if last else 0:.1f} MB at the end; "
        f"slope {fmt(rss_slope, 'KB/min')}",
        f"- Open file descriptors: {first.fds if first else 0} at start, {last.fds if last else 0} at the end; "
        f"slope {fmt(fd_slope, 'per minute')}",
        "",
        "## Per interval",
        "",
        "Outcome columns count the requests that finished in the interval; RSS, fds and the ledger "
        "are read at its end.",
        "",
        *md_table(HEAD, table_rows(samples, args.table_every)),
        "",
        "## By scenario",
        "",
        *md_table(
            ["scenario", "weight", "allowed", *OUTCOMES],
            [
                [
                    name,
                    f"{weight:g}",
                    ", ".join(sorted(allowed)),
                    *(str(stats.by_scenario.get((name, o), 0)) for o in OUTCOMES),
                ]
                for name, (weight, allowed) in SCENARIOS.items()
            ],
        ),
        "",
        "Routes: " + ", ".join(f"{route} {n}" for route, n in sorted(stats.by_route.items())),
        "",
    ]
    if stats.unexpected:
        lines += ["## Unexpected outcomes (first 20)", "", *(f"- {u}" for u in stats.unexpected[:20]), ""]
    (workdir / "samples.json").write_text(json.dumps([vars(s) for s in samples]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines[lines.index("## Criteria") : lines.index("## Per interval")]))
    print(f"summary: {args.output}; logs: {workdir}")
    return 0 if passed else 1
