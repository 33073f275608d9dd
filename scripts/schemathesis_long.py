#!/usr/bin/env python3
"""The long schemathesis run: the admin and customer APIs against their OpenAPI document.

Not part of CI (CI runs ``tests/test_schemathesis.py`` with a few examples per operation,
derandomized, without the coverage phase). This runs the same test with ``--examples`` examples
per operation, random generation, and the coverage phase (boundary values of every parameter,
unexpected methods) added, against a fresh gateway on SQLite in front of the fake upstream. The
checks are the CI ones: no 5xx; documented status and content type; bodies conforming to the
document; errors in the API's envelope with request-id headers.

Usage (from the repository root)::

    .venv/bin/python scripts/schemathesis_long.py                    # 60 examples per operation
    .venv/bin/python scripts/schemathesis_long.py --examples 200 --report out/st.json
    .venv/bin/python scripts/schemathesis_long.py -- -k "admin/plans"   # extra pytest arguments

It prints the requests sent (schemathesis' own re-sends included), the statuses, the 5xx
(expected: none), the operations that never answered 2xx, and the gateway's RSS before and
after. Exit status: pytest's (a failure prints schemathesis' report with a curl command to
reproduce it), or 1 if fewer than ``--min-requests`` requests were sent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=60, help="examples per operation (default 60)")
    parser.add_argument(
        "--phases", default="examples,coverage,fuzzing", help="schemathesis phases (default: %(default)s)"
    )
    parser.add_argument("--report", type=Path, help="write the JSON statistics here")
    parser.add_argument("--min-requests", type=int, default=2000, help="fail below this many (default 2000)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    report = args.report or Path(tempfile.mkdtemp(prefix="claudestore-st-")) / "schemathesis.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CLAUDESTORE_SCHEMATHESIS_EXAMPLES": str(args.examples),
        "CLAUDESTORE_SCHEMATHESIS_PHASES": args.phases,
        "CLAUDESTORE_SCHEMATHESIS_RANDOM": "1",
        "CLAUDESTORE_SCHEMATHESIS_REPORT": str(report),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_schemathesis.py",
        "-k",
        "test_api_conforms_to_its_document",
        *args.pytest_args,
    ]
    print(
        "$", " ".join(command), f"({args.examples} examples per operation, phases {args.phases})", flush=True
    )
    started = time.monotonic()
    code = subprocess.call(command, cwd=ROOT, env=env)
    elapsed = time.monotonic() - started

    if not report.exists():
        print("no report was written (the gateway fixture did not finish)", file=sys.stderr)
        return code or 1
    sys.path.insert(0, str(ROOT / "src"))
    from claudestore.api.openapi import document

    documented = {f"{m.upper()} {path}" for path, item in document()["paths"].items() for m in item}
    by_backend = json.loads(report.read_text())
    total = sum(stats["requests"] for stats in by_backend.values())
    print(f"\nschemathesis_long: {total} requests in {elapsed:.0f} s, pytest exit {code}")
    for backend, stats in by_backend.items():
        fives = sum(n for status, n in stats["by_status"].items() if int(status) >= 500)
        print(f"\n[{backend}] {stats['requests']} requests; 5xx: {fives}; statuses: {stats['by_status']}")
        per_op: dict[str, dict[int, int]] = defaultdict(dict)
        for name, n in stats["by_operation"].items():
            operation, status = name.rsplit(" ", 1)
            per_op[operation][int(status)] = n
        reached = [op for op in documented if any(200 <= s < 300 for s in per_op.get(op, {}))]
        probes = sum(sum(per_op[op].values()) for op in per_op if op not in documented)
        print(
            f"[{backend}] documented operations answered 2xx: {len(reached)}/{len(documented)}; "
            f"requests with undocumented methods (coverage phase): {probes}"
        )
        untried = [op for op in documented if op not in per_op]
        if untried:
            print(f"[{backend}] documented operations not tried (deselected?): {len(untried)}")
        for op in sorted(set(documented) - set(reached) - set(untried)):
            print("    never 2xx:", op, dict(sorted(per_op[op].items())))
        if stats["rss_kib"]:
            print(f"[{backend}] gateway RSS (requests, KiB):", stats["rss_kib"])
    print(f"report: {report}")
    if total < args.min_requests and not args.pytest_args:
        print(f"only {total} requests (expected at least {args.min_requests})", file=sys.stderr)
        return code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
