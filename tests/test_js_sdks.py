"""The official JavaScript SDKs (``@anthropic-ai/sdk``, ``openai``) against the real gateway.

``tests/js/sdk.test.mjs`` holds the cases (create, stream, a tool call with streamed
arguments, both models, a typed 401); this module runs it with ``node --test``, giving it
only the gateway's base URL and a key, and checks node's exit code and TAP summary. Skipped
(or failed, with ``CLAUDESTORE_REQUIRE_CLIENTS=1``) when the SDKs are not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.support.clients import JS_DIR, require_js_client
from tests.support.servers import Gateway

SCRIPT = JS_DIR / "sdk.test.mjs"


def test_js_sdks(gateway: Gateway) -> None:
    require_js_client("@anthropic-ai/sdk/package.json")
    require_js_client("openai/package.json")
    node = shutil.which("node")
    assert node is not None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "CLAUDESTORE_URL": gateway.url,
        "CLAUDESTORE_KEY": gateway.key,
    }
    proc = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(SCRIPT)],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    summary = dict(re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", output, re.MULTILINE))
    failed = [line for line in output.splitlines() if line.lstrip().startswith("not ok")]
    assert proc.returncode == 0, f"node --test exited {proc.returncode}; failing: {failed}\n{output[-6000:]}"
    assert summary.get("fail") == "0" and summary.get("cancelled") == "0", summary
    # 2 SDKs x 2 models x (5 or 6 cases) + 3 per SDK; a count guards against a silently empty run.
    assert int(summary["pass"]) >= 28, (summary, output[-3000:])
    assert "@anthropic-ai/sdk 1." in output and "openai 7." in output
