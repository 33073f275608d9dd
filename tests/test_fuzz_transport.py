"""Truncated and slow uploads over raw sockets, and the whole fuzz run's final check.

Bodies cut off mid-upload (the declared Content-Length never reached) or sent in slow pieces,
to the generation endpoints and the admin API: no crash, and a complete slow upload is
answered normally. An abandoned upload is recorded as the client's doing, not a server error.
Last, ``test_gateway_alive_and_memory_flat`` checks the fuzzers' shared gateway (``world``,
tests/support/fuzz.py) after everything: still serving, RSS flat, no upstream 5xx. It runs last
when the fuzz files run together (this file sorts after tests/test_fuzz_generation.py and
tests/test_fuzz_management_apis.py; scripts/fuzz_long.py names it last).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.support.envelopes import rss_kib
from tests.support.fuzz import World, budget, dumps, gen_headers, ok_json, template
from tests.support.servers import ADMIN_KEY

pytest_plugins = ["tests.support.fuzz"]  # the world gateway


# -- truncated and slow uploads (raw sockets) ---------------------------------------------------


def raw_exchange(port: int, head: bytes, chunks: list[bytes], pause: float, close_early: bool) -> bytes:
    """Send a request by hand; returns whatever the server answered before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if pause:
                time.sleep(pause)
            sock.sendall(chunk)
        if close_early:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
                if not close_early and b"\r\n\r\n" in received and _complete(received):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return raw.endswith(b"0\r\n\r\n")


@budget("truncated")
@given(
    endpoint=st.sampled_from(
        ["/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens", "/admin/accounts"]
    ),
    cut=st.floats(0, 1),
    pieces=st.integers(1, 4),
    slow=st.booleans(),
    complete=st.booleans(),
)
def test_truncated_and_slow_uploads(
    world: World, endpoint: str, cut: float, pieces: int, slow: bool, complete: bool
) -> None:
    """The declared Content-Length is never reached (the client stops and closes), or the body
    arrives in slow pieces: no crash, and a complete slow upload is answered normally."""
    shape = "openai" if "chat" in endpoint else "anthropic"
    if endpoint == "/admin/accounts":
        body = dumps({"name": f"slow-{time.time_ns()}"})
    else:
        body = dumps(template(shape, "claude-test"))
    key = ADMIN_KEY if endpoint.startswith("/admin") else world.gw.key
    sent = body if complete else body[: int(len(body) * cut)]
    head = (
        f"POST {endpoint} HTTP/1.1\r\nhost: fuzz\r\nauthorization: Bearer {key}\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    step = max(1, -(-len(sent) // pieces))
    chunks = [sent[i : i + step] for i in range(0, len(sent), step)]
    answer = raw_exchange(world.gw.port, head, chunks, 0.02 if slow else 0.0, close_early=not complete)
    world.stats.requests += 1
    assert world.gw.proc.poll() is None
    if complete:
        status = int(answer.split(b" ", 2)[1])
        assert status in (200, 201), answer[:500]
    elif answer:
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:500]


# -- a fixed bug, pinned --------------------------------------------------------------------------


def test_truncated_upload_is_not_recorded_as_a_server_error(world: World) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    key = ok_json(
        world.http.post(
            f"/admin/accounts/{world.customer_account}/keys", json={"name": "truncated"}, headers=admin
        ),
        201,
    )
    body = dumps(template("anthropic", "claude-test"))
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: fuzz\r\nx-api-key: {key['key']}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    log_before = world.gw.log.read_text(errors="replace").count("unhandled error")
    raw_exchange(world.gw.port, head, [body[: len(body) // 2]], 0.0, close_early=True)
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = ok_json(world.http.get("/admin/usage/requests", params={"key_id": key["id"]}, headers=admin))[
            "data"
        ]
    assert rows, "no ledger row for the abandoned request"
    assert rows[0]["status"] < 500, rows[0]
    assert world.gw.log.read_text(errors="replace").count("unhandled error") == log_before


# -- the whole run ------------------------------------------------------------------------------

#: RSS may grow this much over the run (allocator slack, caches filling: policy, prices, keys).
RSS_SLACK_KIB = 24 * 1024


def test_gateway_alive_and_memory_flat(world: World) -> None:
    """After all the fuzz tests (run last, see the module docstring): still serving, RSS flat."""
    resp = world.send(
        "POST",
        "/v1/messages",
        "anthropic",
        content=dumps(template("anthropic", "claude-test")),
        headers=gen_headers(world.gw.key),
    )
    assert resp.status_code == 200
    rss = rss_kib(world.gw.proc.pid)
    growth = rss - world.rss_baseline_kib
    print(
        f"\nfuzz: {world.stats.requests} requests, statuses {dict(sorted(world.stats.by_status.items()))}, "
        f"RSS {world.rss_baseline_kib} -> {rss} KiB ({growth:+d})"
    )
    assert growth < RSS_SLACK_KIB, f"RSS grew by {growth} KiB over {world.stats.requests} requests"
    assert not world.stats.upstream_5xx, world.stats.upstream_5xx[:10]
