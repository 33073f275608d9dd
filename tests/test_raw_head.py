"""Response heads the gateway encodes itself (server/raw_head.py): written by a real uvicorn as
uvicorn writes its own (status line, date, length or chunked, keep-alive and close), the same
helpers answering with a plain header list under any other server, and the gateway's own
responses byte for byte on the wire."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from claudestore.server import raw_head
from claudestore.server.http import send_bytes, start_stream
from tests.support.servers import Gateway, uvicorn_thread


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/json: send_bytes; /stream: start_stream and two chunks; /both: HEAD and headers at once."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    headers = {"request-id": "req_1", "x-thing": "a b\tc"}
    lines = b"x-ratelimit-limit-requests: 60\r\n"
    if path == "/json":
        await send_bytes(send, 201, b'{"ok":true}', headers, lines=lines)
    elif path == "/stream":
        await start_stream(send, headers, lines)
        for part in (b"data: 1\n\n", b"data: 2\n\n"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/both":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")], raw_head.HEAD: b""}
        )
    elif path == "/kind":
        body = b"raw" if raw_head.takes_raw_head(send) else b"list"
        await send_bytes(send, 200, body, {})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    assert raw_head.install()
    with uvicorn_thread(_app) as base:
        yield base


def _raw(base: str, request: bytes) -> bytes:
    """One raw HTTP/1.1 exchange; what the server sent until it closed the connection."""
    u = urlsplit(base)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_head_lines_refuse_what_uvicorn_refuses() -> None:
    assert raw_head.head_lines({"a-b": "1 2\t3", "x": ""}) == b"a-b: 1 2\t3\r\nx: \r\n"
    for bad in ({"a b": "1"}, {"a": "1\r\nset-cookie: x"}, {"": "1"}, {"a:": "1"}, {"a": "\x00"}):
        with pytest.raises(ValueError, match="invalid response header"):
            raw_head.head_lines(bad)


def test_a_whole_response_as_uvicorn_writes_it(url: str) -> None:
    out = _raw(url, b"GET /json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    assert status == b"HTTP/1.1 201 Created" and body == b'{"ok":true}'
    names = [line.split(b": ", 1)[0] for line in lines]
    assert names[0] in (b"date", b"server")  # uvicorn's default headers first
    assert [n for n in names if n not in (b"date", b"server")] == [
        b"request-id", b"x-thing", b"x-ratelimit-limit-requests", b"content-type", b"content-length", b"connection",
    ]  # fmt: skip
    assert b"content-length: 11" in lines and b"connection: close" in lines and b"x-thing: a b\tc" in lines


def test_keep_alive_and_chunked_streams(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        for _ in range(3):  # one connection for all: each response complete and framed
            r = client.get("/json")
            assert (
                r.status_code == 201
                and r.json() == {"ok": True}
                and r.headers["x-ratelimit-limit-requests"] == "60"
            )
            s = client.get("/stream")
            assert s.headers["transfer-encoding"] == "chunked" and s.text == "data: 1\n\ndata: 2\n\n"
            assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert "content-length" not in s.headers and s.headers["cache-control"] == "no-cache"
        assert client.get("/kind").text == "raw"


def test_a_head_with_headers_is_refused(url: str) -> None:
    assert httpx.get(url + "/both").status_code == 500  # refused before anything was written


async def test_other_servers_get_a_header_list() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:  # an in-process client's send: no raw heads
        sent.append(message)

    assert not raw_head.takes_raw_head(send)
    await send_bytes(send, 200, b"{}", {"request-id": "req_1"}, lines=b"a: 1\r\nb: 2 3\r\n")
    await start_stream(send, {"request-id": "req_2"}, b"c: 4\r\n")
    assert sent[0]["headers"] == [
        (b"request-id", b"req_1"), (b"a", b"1"), (b"b", b"2 3"), (b"content-type", b"application/json"),
        (b"content-length", b"2"),
    ]  # fmt: skip
    assert sent[2]["headers"][:2] == [(b"request-id", b"req_2"), (b"c", b"4")]
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[2]["headers"]
    assert raw_head.HEAD not in sent[0] and raw_head.HEAD not in sent[2]


def test_the_gateways_head_on_the_wire(gateway: Gateway) -> None:
    body = b'{"model":"claude-test","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
    request = (
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"anthropic-version: 2023-06-01\r\nx-api-key: %b\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b"
    ) % (gateway.key.encode(), len(body), body)
    head, _, payload = _raw(gateway.url, request).partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    names = [line.split(b": ", 1)[0] for line in lines]
    assert status == b"HTTP/1.1 200 OK" and len(names) == len(set(names)), names
    assert {b"date", b"request-id", b"content-type", b"content-length", b"connection"} <= set(names)
    length = int(next(line for line in lines if line.startswith(b"content-length: ")).split(b": ")[1])
    assert length == len(payload) and payload.startswith(b"{")


async def test_gateway_sends_no_server_header(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.get("/v1/models", headers={"x-api-key": gateway.key})
    assert response.status_code == 200
    assert "server" not in response.headers and response.headers["date"]
