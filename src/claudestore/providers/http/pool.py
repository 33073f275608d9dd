"""Connections (asyncio protocols) and the keep-alive pool that hands them out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl

from claudestore.providers.http.response import Response
from claudestore.providers.http.wire import ConnectTimeout, Origin, UpstreamConnectionError


class _Connection(asyncio.Protocol):
    __slots__ = ("_paused", "client", "closed", "idle_since", "origin", "response", "timer", "transport")

    def __init__(self, client: HTTPClient, origin: Origin) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        resp = self.response
        if resp is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self.abort()
            return
        try:
            resp._feed(data)
        except UpstreamConnectionError as exc:
            self.response = None
            resp._lost(exc)
            self.abort()
            return
        if resp.complete:
            self.response = None
            resp._conn = None
            if self._paused:
                self.resume()
            if resp.keep_alive and not self.closed:
                self.client._put(self)
            else:
                self.abort()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        resp = self.response
        if resp is not None:
            self.response = None
            resp._lost(exc)

    def send(self, head: bytes, body: bytes, loop: asyncio.AbstractEventLoop) -> Response:
        resp = self.response = Response(self, loop)
        transport = self.transport
        assert transport is not None
        transport.write(b"%scontent-length: %d\r\n\r\n%s" % (head, len(body), body))
        return resp

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.client._forget(self)
            if self.transport is not None:
                self.transport.abort()


class HTTPClient:
    """Keep-alive connection pools per origin, at most ``limit`` connections in all."""

    def __init__(
        self, *, limit: int = 100, keepalive: float = 60.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.limit = max(1, limit)
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._slots: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def post(self, origin: Origin, head: bytes, body: bytes, connect_timeout: float) -> Response:
        """Send ``head`` (from :func:`encode_head`, plus any per-request header lines) and
        ``body``; return once the response's status and headers are in. Cancelling this drops the
        connection. A reused connection that the server had closed is retried on a new one."""
        if self._closed:
            raise UpstreamConnectionError("The gateway's HTTP client is closed.")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        conn = self._take(origin)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect(origin, connect_timeout, loop)
            resp = conn.send(head, body, loop)
            try:
                await resp._head()
            except UpstreamConnectionError:
                if not reused or resp.got_bytes:
                    raise
                # The server closed the idle connection as the request went out (it read none of it).
                conn, reused = None, False
                continue
            except BaseException:
                resp.close()
                raise
            return resp

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
            conn.abort()
        return None

    async def _connect(self, origin: Origin, limit: float, loop: asyncio.AbstractEventLoop) -> _Connection:
        while len(self._open) + self._connecting >= self.limit:
            if self._close_one_idle():
                continue
            slot = loop.create_future()
            self._slots.append(slot)
            try:
                await slot
            finally:
                with contextlib.suppress(ValueError):
                    self._slots.remove(slot)
        self._connecting += 1
        conn = _Connection(self, origin)
        try:
            async with asyncio.timeout(limit):
                if origin.tls:
                    await loop.create_connection(
                        lambda: conn, origin.host, origin.port, ssl=self.ssl_context, server_hostname=origin.host
                    )
                else:
                    await loop.create_connection(lambda: conn, origin.host, origin.port)
        except TimeoutError:
            conn.abort()
            raise ConnectTimeout(f"The upstream could not be connected to within {limit:g} s.") from None
        except (OSError, ssl.SSLError) as exc:
            kind = "TLS handshake failed" if isinstance(exc, ssl.SSLError) else "refused or unreachable"
            raise UpstreamConnectionError(f"The upstream could not be reached ({kind}).") from exc
        except BaseException:
            conn.abort()
            raise
        finally:
            self._connecting -= 1
            self._free_slot()  # a waiter re-checks the count
        if conn.closed:  # lost while the handshake finished
            raise UpstreamConnectionError("The upstream closed the connection at once.")
        self._open.add(conn)
        return conn

    def _put(self, conn: _Connection) -> None:
        if self._closed or self.keepalive <= 0:
            conn.abort()
            return
        loop = self._loop
        assert loop is not None
        conn.idle_since = loop.time()
        self._idle.setdefault(conn.origin, []).append(conn)
        conn.timer = loop.call_at(conn.idle_since + self.keepalive, conn.abort)
        self._free_slot()  # a waiter may take this one, or close it to open another

    def _forget(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.origin)
            if idle and conn in idle:
                idle.remove(conn)
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None
            self._free_slot()

    def _close_one_idle(self) -> bool:
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        oldest.abort()
        return True

    def _free_slot(self) -> None:
        while self._slots:
            slot = self._slots.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost
