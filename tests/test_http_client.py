"""The upstream HTTP/1.1 client (providers/http_client.py) against scripted servers on loopback.

Each server is a real asyncio TCP server that reads the request and writes exactly the bytes a
test gives it, so every framing case (content-length, chunked, until-close, 1xx, compressed,
broken) is on the wire as a server would send it.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from claudestore.providers.http import (
    HIGH_WATER,
    ConnectTimeout,
    HTTPClient,
    Origin,
    UpstreamConnectionError,
    encode_head,
    split_url,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


class Server:
    """A TCP server on 127.0.0.1 that hands each request (head + body) to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def origin(self) -> Origin:
        return Origin("http", "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.handler(reader, writer, body)
                if writer.is_closing():
                    return
        finally:
            writer.close()


def reply(raw: bytes, *, close: bool = False) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return handler


def reply_in_two(first: bytes, rest: bytes, *, after: asyncio.Event) -> Handler:
    """Writes ``first``, then ``rest`` once ``after`` is set: a server that stalls mid-response."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(first)
        await writer.drain()
        await after.wait()
        writer.write(rest)
        await writer.drain()

    return handler


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s" % (
        head.encode(),
        len(body),
        body,
    )


HEAD = encode_head("/v1/messages", Origin("http", "127.0.0.1", 1), {"content-type": "application/json"})


async def post(client: HTTPClient, server: Server, body: bytes = b"{}") -> bytes:
    resp = await client.post(server.origin, HEAD, body, 5.0)
    assert resp.status == 200
    return await resp.read()


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    c = HTTPClient(limit=10)
    yield c
    await c.close()


async def test_request_on_the_wire_and_response(client: HTTPClient) -> None:
    async with Server(reply(ok(b'{"a":1}', "X-Thing: One", "x-thing: two"))) as server:
        resp = await client.post(server.origin, HEAD + b"anthropic-version: 2023-06-01\r\n", b'{"q":2}', 5.0)
        assert resp.status == 200
        assert resp.headers.get("Content-Type") == "application/json"
        assert resp.headers["X-THING"] == "One, two"
        assert await resp.read() == b'{"a":1}'
        assert resp.complete and resp.at_eof()
    sent = server.requests[0]
    assert sent.startswith(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:1\r\n")
    assert b"\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\n" in sent
    assert sent.endswith(b"content-length: 7\r\n\r\n" + b'{"q":2}')


def test_urls_and_header_checks() -> None:
    origin, target = split_url("https://api.example.com/v1/chat/completions?x=1")
    assert origin == Origin("https", "api.example.com", 443) and target == "/v1/chat/completions?x=1"
    assert origin.host_header == "api.example.com"
    assert Origin("http", "::1", 8080).host_header == "[::1]:8080"
    assert split_url("http://h")[1] == "/"
    with pytest.raises(ValueError):
        split_url("ftp://h/x")
    for name, value in (("x-a", "1\r\nx-b: 2"), ("x-a\n", "1"), ("x-a", "1\0"), ("x a", "1"), ("", "1")):
        with pytest.raises(ValueError):
            encode_head("/", origin, {name: value})


async def test_keep_alive_reuses_one_connection(client: HTTPClient) -> None:
    async with Server(reply(ok(b"{}"))) as server:
        for _ in range(5):
            assert await post(client, server) == b"{}"
        assert server.connections == 1
        assert client.idle_connections == 1


async def test_connection_close_is_not_reused(client: HTTPClient) -> None:
    async with Server(reply(ok(b"{}", "connection: close"))) as server:
        for _ in range(3):
            assert await post(client, server) == b"{}"
        assert server.connections == 3
        await asyncio.sleep(0.01)
        assert client.open_connections == 0


async def test_chunked_body_arrives_piece_by_piece(client: HTTPClient) -> None:
    go = asyncio.Event()
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
    async with Server(reply_in_two(head, b"6\r\n world\r\n0\r\n\r\n", after=go)) as server:
        resp = await client.post(server.origin, HEAD, b"{}", 5.0)
        assert await resp.readany() == b"hello"
        assert not resp.complete
        go.set()
        assert await resp.readany() == b" world"
        assert await resp.readany() == b""
        assert resp.complete
        assert await post(client, server) == b"hello world"  # same connection, reused
        assert server.connections == 1


async def test_body_until_close(client: HTTPClient) -> None:
    async with Server(
        reply(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it", close=True)
    ) as server:
        assert await post(client, server) == b"all of it"
        await asyncio.sleep(0.01)
        assert client.open_connections == 0


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
    ],
)
async def test_compressed_bodies(
    client: HTTPClient, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    payload = b'{"text": "' + b"abc" * 5000 + b'"}'
    async with Server(reply(ok(compress(payload), f"content-encoding: {encoding}"))) as server:
        assert await post(client, server) == payload


async def test_unknown_encoding_and_bad_gzip_are_errors(client: HTTPClient) -> None:
    async with Server(reply(ok(b"xx", "content-encoding: br"))) as server:
        with pytest.raises(UpstreamConnectionError, match="unsupported encoding"):
            await post(client, server)
    async with Server(reply(ok(b"not gzip at all", "content-encoding: gzip"))) as server:
        with pytest.raises(UpstreamConnectionError, match="does not decompress"):
            await post(client, server)


async def test_idle_connection_closed_by_the_server_is_retried_once(client: HTTPClient) -> None:
    # The server claims keep-alive but closes right after answering: the pooled connection is
    # dead by the next request, which must go out on a fresh one without an error.
    async with Server(reply(ok(b"{}"), close=True)) as server:
        assert await post(client, server) == b"{}"
        await asyncio.sleep(0.01)
        assert await post(client, server) == b"{}"
        assert server.connections == 2


async def test_stale_connection_without_notice_is_retried(client: HTTPClient) -> None:
    # The connection looks alive to the client when the request goes out (no FIN seen yet).
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        if len(server.requests) == 2:
            writer.transport.abort()  # the second request, on the first connection, gets no answer
            return
        writer.write(ok(b"{}"))
        await writer.drain()

    async with Server(handler) as server:
        assert await post(client, server) == b"{}"
        assert await post(client, server) == b"{}"  # retried on a new connection: request 3
        assert len(server.requests) == 3


async def test_break_mid_body_after_data(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.close()

    async with Server(handler) as server:
        resp = await client.post(server.origin, HEAD, b"{}", 5.0)
        assert await resp.readany() == b"partial"  # what arrived is read first
        with pytest.raises(UpstreamConnectionError, match="mid-response"):
            await resp.readany()


async def test_no_answer_and_garbage_are_errors(client: HTTPClient) -> None:
    async with Server(reply(b"", close=True)) as server:
        with pytest.raises(UpstreamConnectionError, match="without answering"):
            await post(client, server)
    async with Server(reply(b"SMTP ready\r\n\r\n")) as server:
        with pytest.raises(UpstreamConnectionError, match="invalid HTTP response"):
            await post(client, server)


async def test_refused_connection_names_no_address(client: HTTPClient) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(UpstreamConnectionError) as info:
        await client.post(Origin("http", "127.0.0.1", port), HEAD, b"{}", 5.0)
    assert "127.0.0.1" not in str(info.value) and str(port) not in str(info.value)


async def test_connect_timeout_covers_the_tls_handshake(client: HTTPClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectTimeout):
            await client.post(Origin("https", "127.0.0.1", port), HEAD, b"{}", 0.2)
        assert client.open_connections == 0
    finally:
        server.close()


async def test_read_deadline_leaves_the_response_readable(client: HTTPClient) -> None:
    go = asyncio.Event()
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"
    async with Server(reply_in_two(head, b"late", after=go)) as server:
        resp = await client.post(server.origin, HEAD, b"{}", 5.0)
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await resp.readany(loop.time() + 0.05)
        go.set()
        assert await resp.readany(loop.time() + 5) == b"late"


async def test_back_pressure_bounds_the_buffer(client: HTTPClient) -> None:
    size = 16 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()

    async with Server(handler) as server:
        resp = await client.post(server.origin, HEAD, b"{}", 5.0)
        await asyncio.sleep(0.3)  # the reader does not read: the socket must stop being read
        assert resp._buffered < HIGH_WATER + 4 * 65536 + 262144
        got = 0
        while chunk := await resp.readany():
            got += len(chunk)
        assert got == size


async def test_pool_limit_queues_requests() -> None:
    client = HTTPClient(limit=1)
    active = 0
    most = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.02)
        active -= 1
        writer.write(ok(b"{}"))
        await writer.drain()

    try:
        async with Server(handler) as server:
            results = await asyncio.gather(*(post(client, server) for _ in range(4)))
            assert results == [b"{}"] * 4
            assert most == 1 and client.open_connections <= 1
    finally:
        await client.close()


async def test_close_mid_body_drops_the_connection(client: HTTPClient) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await reader.read()  # returns when the client drops the connection
        closed.set()

    async with Server(handler) as server:
        resp = await client.post(server.origin, HEAD, b"{}", 5.0)
        assert await resp.readany() == b"abc"
        resp.close()
        await asyncio.wait_for(closed.wait(), 2)
        assert client.open_connections == 0


async def test_cancelled_request_drops_the_connection(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        await asyncio.sleep(5)

    async with Server(handler) as server:
        task = asyncio.ensure_future(client.post(server.origin, HEAD, b"{}", 5.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)
        assert client.open_connections == 0


async def test_informational_response_then_the_answer(client: HTTPClient) -> None:
    raw = b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + ok(b'{"ok":true}')
    async with Server(reply(raw)) as server:
        resp = await client.post(server.origin, HEAD, b"{}", 5.0)
        assert resp.status == 200 and "link" not in resp.headers
        assert await resp.read() == b'{"ok":true}'


async def test_bytes_after_the_response_end_the_connection(client: HTTPClient) -> None:
    async with Server(reply(ok(b"{}") + b"HTTP/1.1 200 OK\r\n")) as server:
        assert await post(client, server) == b"{}"
        await asyncio.sleep(0.01)
        assert await post(client, server) == b"{}"
        assert server.connections == 2


async def test_error_status_is_a_response(client: HTTPClient) -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    raw = b"HTTP/1.1 529 Overloaded\r\nretry-after: 3\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    async with Server(reply(raw)) as server:
        resp = await client.post(server.origin, HEAD, b"{}", 5.0)
        assert resp.status == 529 and resp.headers.get("Retry-After") == "3"
        assert await resp.read() == body


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS test")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_verifies_the_server(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(ok(b'{"tls":true}'))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        trusting = HTTPClient(ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            resp = await trusting.post(Origin("https", "localhost", port), HEAD, b"{}", 5.0)
            assert await resp.read() == b'{"tls":true}'
        finally:
            await trusting.close()
        default = HTTPClient()  # the system's trust store: the self-signed server is refused
        try:
            with pytest.raises(UpstreamConnectionError, match="TLS handshake failed"):
                await default.post(Origin("https", "localhost", port), HEAD, b"{}", 5.0)
        finally:
            await default.close()
    finally:
        server.close()
