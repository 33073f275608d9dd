"""One response being received: the parser's callbacks, the body buffer with back-pressure,
and the reads the caller makes."""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING, Any

import httptools

from claudestore.providers.http.wire import Headers, UpstreamConnectionError, body_decoder

if TYPE_CHECKING:
    from claudestore.providers.http.pool import _Connection

# Body bytes buffered for the reader before the socket stops being read (TCP then pushes back).
HIGH_WATER = 1 << 18


class Response:
    """One response: status and headers once they are in, then the body as it arrives.

    Also the parser's callback object. The connection goes back to the pool by itself once
    the whole body is in (before it is read) if the server lets it be reused."""

    __slots__ = (
        "_buf",
        "_buffered",
        "_conn",
        "_decoder",
        "_error",
        "_head_waiter",
        "_header_name",
        "_parser",
        "_waiter",
        "complete",
        "got_bytes",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn: _Connection | None = conn
        self._parser = httptools.HttpResponseParser(self)
        self._head_waiter: asyncio.Future[None] | None = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._buf: list[bytes] = []
        self._buffered = 0
        self._error: Exception | None = None
        self._decoder: Any = None
        self._header_name = ""
        self.status = 0
        self.headers = Headers()
        self.complete = False  # the whole body has arrived
        self.got_bytes = False  # the server sent anything at all
        self.keep_alive = False  # the connection may take another request after this one

    # -- parser callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # more bytes after the answer: nothing more on this connection is trusted
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.headers
        if key in headers:
            dict.__setitem__(headers, key, dict.__getitem__(headers, key) + ", " + text)
        else:
            dict.__setitem__(headers, key, text)

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx (e.g. 103 Early Hints): the real answer follows
            self.headers = Headers()
            return
        self.status = status
        self._decoder = body_decoder(self.headers.get("content-encoding"))
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        decoder = self._decoder
        if decoder is not None:
            try:
                body = decoder.decompress(body)
            except zlib.error:
                raise UpstreamConnectionError("The upstream sent a body that does not decompress.") from None
            if not body:
                return
        self._buf.append(body)
        self._buffered += len(body)
        self._wake()
        if self._buffered > HIGH_WATER and self._conn is not None:
            self._conn.pause()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of a 1xx
        if self._decoder is not None:
            try:
                tail = self._decoder.flush()
            except zlib.error:
                raise UpstreamConnectionError("The upstream sent a body that does not decompress.") from None
            if tail:
                self._buf.append(tail)
                self._buffered += len(tail)
        self.keep_alive = self._parser.should_keep_alive()  # read before the parser resets
        self.complete = True
        self._wake()

    # -- from the connection -----------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self.got_bytes = True
        if self.complete:
            raise UpstreamConnectionError("The upstream sent bytes after the end of its response.")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, UpstreamConnectionError):
                raise cause from None
            raise UpstreamConnectionError("The upstream's response could not be read.") from None
        except httptools.HttpParserError as exc:
            raise UpstreamConnectionError(f"The upstream sent an invalid HTTP response ({exc}).") from None

    def _lost(self, exc: Exception | None) -> None:
        """The connection is gone; the body ends here (a body that lasts until close) or broke."""
        self._conn = None
        if self.complete:
            return
        if exc is None and self.status and self._until_close():
            self.on_message_complete()
            return
        if isinstance(exc, UpstreamConnectionError):
            self._fail(exc)
        elif self.status:
            self._fail(UpstreamConnectionError("The upstream closed the connection mid-response."))
        else:
            self._fail(UpstreamConnectionError("The upstream closed the connection without answering."))

    def _until_close(self) -> bool:
        h = self.headers
        return "content-length" not in h and "chunked" not in h.get("transfer-encoding", "")

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the caller --------------------------------------------------------------
    async def _head(self) -> None:
        waiter = self._head_waiter
        assert waiter is not None
        try:
            await waiter
        finally:
            self._head_waiter = None

    def at_eof(self) -> bool:
        """The whole body has arrived and been read."""
        return self.complete and not self._buf

    def read_nowait(self) -> bytes:
        """The body bytes that have arrived and not been read (``b""`` when none). Raises the
        connection's error once what arrived before it has been read."""
        buf = self._buf
        if not buf:
            if self._error is not None and not self.complete:
                raise self._error
            return b""
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        if self._buffered > HIGH_WATER and self._conn is not None:
            self._conn.resume()
        self._buffered = 0
        return data

    async def readany(self, deadline: float | None = None) -> bytes:
        """The next body bytes (``b""`` at the end). ``deadline`` (event-loop time): raises
        ``TimeoutError`` then, leaving the response readable."""
        data = self.read_nowait()
        if data or self.complete:
            return data
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if deadline is None else loop.call_at(deadline, _time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return self.read_nowait()

    async def read(self) -> bytes:
        """The whole body."""
        if self.complete:
            return self.read_nowait()
        parts = []
        while True:
            data = await self.readany()
            if not data:
                return b"".join(parts)
            parts.append(data)

    def close(self) -> None:
        """Done with this response: a connection still receiving it is dropped (the upstream
        sees the close and stops); one that received all of it is already back in the pool."""
        conn = self._conn
        if conn is not None and not self.complete:
            self._conn = None
            conn.abort()
        self._buf.clear()

    release = close


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
