#!/usr/bin/env python3
"""The long fuzz run (issue 9): at least 10,000 generated requests against a real gateway.

Not part of CI (CI runs the same generators with a few hundred examples). It runs
``tests/test_fuzz_generation.py``, ``tests/test_fuzz_management_apis.py`` and
``tests/test_fuzz_transport.py`` (in that order: the last one ends with the whole run's
check) under the ``claudestore-long`` hypothesis profile: random
(not derandomized) generation, ``--examples`` examples shared among the fuzz tests by their
weights, against a fresh gateway on SQLite in front of the fake upstream. The properties are
the CI ones: no 5xx caused by the input, every error in the caller's shape, the gateway
process alive, RSS flat.

Usage (from the repository root)::

    .venv/bin/python scripts/fuzz_long.py                      # 10,000 examples (~4 min on 2 cores)
    .venv/bin/python scripts/fuzz_long.py --examples 50000 --report out/fuzz.json

It prints the number of requests, the statuses seen, the upstream-caused 5xx (expected: none)
and RSS samples with the slope over the last third of the run (a leak shows as a steady
positive slope; the allocator grows once, while the largest bodies are sent). Exit status:
pytest's, or 1 if fewer requests than examples were sent. A failure prints hypothesis' minimal example and a
``@reproduce_failure`` line to replay it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def slope_kib_per_1000(samples: list[list[int]]) -> float | None:
    """Least-squares slope of RSS (KiB) per 1,000 requests over the last third of the samples
    (after the huge bodies of test_deep_and_huge have set the allocator's high-water mark)."""
    tail = samples[len(samples) * 2 // 3 :]
    if len(tail) < 3:
        return None
    xs = [float(n) for n, _ in tail]
    ys = [float(kib) for _, kib in tail]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples in all (default 10000)")
    parser.add_argument("--report", type=Path, help="write the JSON statistics here")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k admin)")
    args = parser.parse_args()

    report = args.report or Path(tempfile.mkdtemp(prefix="claudestore-fuzz-")) / "fuzz.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CLAUDESTORE_FUZZ_PROFILE": "claudestore-long",
        "CLAUDESTORE_FUZZ_EXAMPLES": str(args.examples),
        "CLAUDESTORE_FUZZ_REPORT": str(report),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "tests/test_fuzz_generation.py",
        "tests/test_fuzz_management_apis.py",
        "tests/test_fuzz_transport.py",
        *args.pytest_args,
    ]
    print("$", " ".join(command), f"(CLAUDESTORE_FUZZ_EXAMPLES={args.examples})", flush=True)
    started = time.monotonic()
    code = subprocess.call(command, cwd=ROOT, env=env)
    elapsed = time.monotonic() - started

    if not report.exists():
        print("no report was written (the gateway fixture did not finish)", file=sys.stderr)
        return code or 1
    stats = json.loads(report.read_text())
    samples = stats["rss_kib"]
    print(f"\nfuzz_long: {stats['requests']} requests in {elapsed:.0f} s, pytest exit {code}")
    print(f"statuses: {stats['by_status']}")
    fives = sum(n for status, n in stats["by_status"].items() if int(status) >= 500)
    print(f"5xx: {fives} (upstream-caused: {len(stats['upstream_5xx'])})")
    for line in stats["upstream_5xx"][:10]:
        print("  ", line)
    if samples:
        first, last = samples[0][1], samples[-1][1]
        slope = slope_kib_per_1000(samples)
        slope_text = "n/a" if slope is None else f"{slope:+.0f} KiB per 1000 requests"
        print(f"RSS: {first} -> {last} KiB over {len(samples)} samples; last-third slope {slope_text}")
        print("RSS samples (requests, KiB):", samples)
    print(f"report: {report}")
    if stats["requests"] < args.examples and not args.pytest_args:
        print(f"only {stats['requests']} requests for {args.examples} examples", file=sys.stderr)
        return code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
