"""Plain-ASGI primitives for the hot endpoints: read a bounded body, send a response.

No framework sits on the two generation endpoints; a request costs a dict of headers
and one body buffer.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from claudestore.core.errors import RequestTooLarge
from claudestore.server.raw_head import HEAD, LENGTH, head_lines, takes_raw_head

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


_ID_PREFIX = "req_" + secrets.token_hex(6)  # random per process: ids never collide across workers
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A unique request id: a per-process random prefix and a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


class Request:
    __slots__ = ("headers", "method", "path", "query", "receive", "request_id", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        # Header names arrive lower-cased from every ASGI server; the last value wins.
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.request_id = new_request_id()

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"Request body is {declared} bytes; the limit is {limit} bytes.")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(f"Request body exceeds the limit of {limit} bytes.")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def api_key(self) -> str | None:
        key = self.headers.get("x-api-key")
        if key:
            return key.strip()
        auth = self.headers.get("authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
        return None


def header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _line_pairs(lines: bytes) -> list[tuple[bytes, bytes]]:
    """Encoded header lines as an ASGI header list (for a server without ``raw_head``)."""
    return [(name, value) for name, _, value in (line.partition(b": ") for line in lines.split(b"\r\n")[:-1])]


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: dict[str, str],
    content_type: str = "application/json",
    lines: bytes = b"",
) -> None:
    """A whole response. ``lines``: more headers, as encoded header lines (the rate-limit ones)."""
    if takes_raw_head(send):
        head = b"%b%bcontent-type: %b\r\ncontent-length: %d\r\n" % (
            head_lines(headers),
            lines,
            content_type.encode(),
            len(body),
        )
        await send({"type": "http.response.start", "status": status, HEAD: head, LENGTH: len(body)})
    else:
        raw = header_list(headers) + _line_pairs(lines)
        raw.append((b"content-type", content_type.encode()))
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


_STREAM_LINES = (
    b"content-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\n"
)


async def start_stream(send: Send, headers: dict[str, str], lines: bytes = b"") -> None:
    """The head of an event stream (its body goes chunked)."""
    if takes_raw_head(send):
        head = head_lines(headers) + lines + _STREAM_LINES
        await send({"type": "http.response.start", "status": 200, HEAD: head, LENGTH: None})
    else:
        raw = header_list(headers) + _line_pairs(lines + _STREAM_LINES)
        await send({"type": "http.response.start", "status": 200, "headers": raw})


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client has gone away (call only after the body was read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
