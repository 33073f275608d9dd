"""Real JavaScript clients (Claude Code, the official JS SDKs) installed under tests/js.

``make test`` installs them with npm. Where they are missing the tests that need them
skip with the reason, unless ``CLAUDESTORE_REQUIRE_CLIENTS=1`` (set by CI) makes that a
failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE_MODULES = JS_DIR / "node_modules"


def require_js_client(relative: str) -> Path:
    """Path of an installed client file under tests/js/node_modules, or skip/fail."""
    path = NODE_MODULES / relative
    if path.exists() and shutil.which("node"):
        return path
    reason = (
        f"{relative} is not installed under {NODE_MODULES} (run `make test`, which runs npm install there)"
    )
    if os.environ.get("CLAUDESTORE_REQUIRE_CLIENTS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)
