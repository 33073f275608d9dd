"""A pipelined Redis client: one connection, every command in flight at once, hiredis replies.

The limiter sends two scripts per request (admission, settlement). Through redis-py each
call costs ~65 µs of CPU (connection pool, per-call response machinery) and a round trip
of its own; here commands are queued on **one** connection and written together once per
event-loop pass, and the replies (Redis answers in order) resolve their futures as they
arrive, parsed by hiredis. Measured on the 2-core bench machine, 64 concurrent callers:
9-12 µs of CPU per EVALSHA against 55-65 µs for redis-py (``bench/redis_client.py``).

* :meth:`RespClient.call` sends a command and awaits its reply; an error reply raises
  :class:`ReplyError` (``NoScriptError`` for ``NOSCRIPT``).
* :meth:`RespClient.send` sends a command without awaiting (when connected): its reply
  goes to a callback. The settlement of a finished request needs nothing back, and is sent
  ``lazy``: with the next admission's write (or within 2 ms), not in a write of its own.
* The connection is opened on first use (``AUTH`` and ``SELECT`` from the URL first) and
  again after it is lost. A command whose reply has not come within ``timeout`` seconds
  fails with :class:`TimeoutError` and closes the connection (its replies can no longer
  be matched to their commands); every command in flight then fails with
  :class:`RespConnectionError`: whether Redis ran it is unknown, as with any client.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS, the system's
trust store) and ``unix:///path/to/socket[?db=N]``; ``?password=`` is read as well.
Commands are RESP2 arrays of bulk strings (``str`` is UTF-8, ``int`` its digits).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

log = logging.getLogger("claudestore.limits")

LAZY_WRITE = 0.002  # seconds a command sent with lazy=True may wait for company (one write for all)

Arg = str | bytes | int
ReplyCallback = Callable[[Any], None]  # gets the reply, or the exception that replaced it


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``)."""


class NoScriptError(ReplyError):
    """``NOSCRIPT``: the script is not in the server's cache (a restart, ``SCRIPT FLUSH``)."""


class RespConnectionError(ConnectionError):
    """The connection to Redis failed or was lost before the reply came."""


def _reply_error(message: str) -> ReplyError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ReplyError(message)


def encode(args: Sequence[Arg]) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n%b" % (len(args), bulk(args))


def bulk(args: Sequence[Arg]) -> bytes:
    """Arguments as RESP bulk strings, one after the other (no array header)."""
    out = []
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        else:
            b = b"%d" % a
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def command_head(args: Sequence[Arg], trailing: int) -> bytes:
    """A command sent again and again, encoded up to its last ``trailing`` arguments (a script's
    sha, its keys and the arguments that do not change): add :func:`tail` of those."""
    return b"*%d\r\n%b" % (len(args) + trailing, bulk(args))


def tail(texts: Sequence[str]) -> bytes:
    """ASCII texts (ids, numbers) as RESP bulk strings, the part of a command that changes per
    call: a third of what :func:`bulk` costs. Text that is not ASCII raises."""
    return "".join([f"${len(t)}\r\n{t}\r\n" for t in texts]).encode("ascii")


@dataclass(frozen=True, slots=True)
class Target:
    host: str | None
    port: int
    path: str | None  # unix socket
    tls: bool
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> Target:
        u = urlsplit(url)
        query = parse_qs(u.query)
        if u.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"a Redis URL starts with redis://, rediss:// or unix://, not {u.scheme!r}://")
        db_text = query.get("db", [""])[0] or (u.path.strip("/") if u.scheme != "unix" else "") or "0"
        if not db_text.isdigit():
            raise ValueError(f"the database of a Redis URL is a number, not {db_text!r}")
        password = unquote(u.password) if u.password else query.get("password", [None])[0]
        username = unquote(u.username) if u.username else None
        if u.scheme == "unix":
            if not u.path:
                raise ValueError("a unix:// Redis URL names the socket's path")
            return cls(None, 0, u.path, False, int(db_text), username, password)
        return cls(u.hostname or "127.0.0.1", u.port or 6379, None, u.scheme == "rediss", int(db_text),
                   username, password)  # fmt: skip


class _Connection(asyncio.Protocol):
    """One connection: commands written in order, replies matched to them in order."""

    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(replyError=_reply_error)  # type: ignore[arg-type]
        self._timeout = timeout
        # Per command in flight: a future (call) or a callback (send), and when it was queued.
        self._waiting: deque[tuple[asyncio.Future[Any] | ReplyCallback | None, float]] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._flush_at: asyncio.Handle | None = None  # the scheduled write of ``_out``
        self._flush_soon = False  # ... in this pass of the loop (not only after LAZY_WRITE)
        self.closed = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RespConnectionError(f"Redis sent a reply that is not RESP: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self._fail(RespConnectionError("Redis sent a reply to no command"))
                return
            target, _ = waiting.popleft()
            if target is None:
                continue
            if isinstance(target, asyncio.Future):
                if not target.done():
                    if isinstance(reply, ReplyError):
                        target.set_exception(reply)
                    else:
                        target.set_result(reply)
            else:
                _deliver(target, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RespConnectionError(f"the connection to Redis was lost ({exc or 'closed by the server'})"))

    # -- commands --------------------------------------------------------------------------

    def queue(
        self, command: bytes, target: asyncio.Future[Any] | ReplyCallback | None, lazy: bool = False
    ) -> None:
        out = self._out
        if not out and not lazy and not self._waiting and self._transport is not None:
            self._transport.write(command)  # nothing in flight: no one to share a write with
        else:
            out.append(command)
            if lazy:  # goes with the next command that is not, or within LAZY_WRITE seconds
                if self._flush_at is None:
                    self._flush_at = self._loop.call_at(self._loop.time() + LAZY_WRITE, self._flush)
            elif not self._flush_soon:  # written with whatever else is queued in this pass of the loop
                self._flush_soon = True
                if self._flush_at is not None:
                    self._flush_at.cancel()
                self._flush_at = self._loop.call_soon(self._flush)
        self._waiting.append((target, self._loop.time()))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._loop.time() + self._timeout, self._check_deadline)

    def _flush(self) -> None:
        self._flush_at, self._flush_soon = None, False
        out, self._out = self._out, []
        if out and self._transport is not None and not self.closed:
            self._transport.write(b"".join(out))

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._waiting or self.closed:
            return
        oldest = self._waiting[0][1]
        if self._loop.time() - oldest >= self._timeout:
            self._fail(TimeoutError(f"Redis did not answer within {self._timeout:g} s"))
        else:
            self._watchdog = self._loop.call_at(oldest + self._timeout, self._check_deadline)

    def _fail(self, exc: Exception) -> None:
        """Close the connection; everything in flight fails with ``exc`` (the first one)."""
        if self.closed:
            return
        self.closed = True
        for handle in (self._watchdog, self._flush_at):
            if handle is not None:
                handle.cancel()
        self._watchdog = self._flush_at = None
        if self._transport is not None:
            self._transport.abort()
        waiting, self._waiting = self._waiting, deque()
        self._out = []
        first = True
        for target, _ in waiting:
            err = exc if first or not isinstance(exc, TimeoutError) else RespConnectionError(str(exc))
            first = False
            if isinstance(target, asyncio.Future):
                if not target.done():
                    target.set_exception(err)
            elif target is not None:
                _deliver(target, err)

    def close(self) -> None:
        self._fail(RespConnectionError("the Redis client was closed"))


def _deliver(callback: ReplyCallback, reply: Any) -> None:
    try:
        callback(reply)
    except Exception:  # a callback's own failure must not break the reply stream
        log.exception("a Redis reply callback failed")


class RespClient:
    def __init__(self, url: str, *, timeout: float = 5.0, connect_timeout: float | None = None) -> None:
        self.target = Target.parse(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise RespConnectionError("the Redis client was closed")
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_future()
            try:
                conn = await self._open()
            except BaseException as exc:
                self._connecting.set_exception(exc if isinstance(exc, Exception) else RespConnectionError())
                self._connecting.exception()  # retrieved: callers joining later re-raise it themselves
                self._connecting = None
                raise
            self._conn = conn
            self._connecting.set_result(conn)
            self._connecting = None
            return conn
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Connection:
        t = self.target
        loop = asyncio.get_running_loop()
        timeout = self.timeout
        try:
            async with asyncio.timeout(self.connect_timeout):
                if t.path is not None:
                    _, conn = await loop.create_unix_connection(lambda: _Connection(timeout), t.path)
                else:
                    tls = ssl.create_default_context() if t.tls else None
                    _, conn = await loop.create_connection(
                        lambda: _Connection(timeout), t.host, t.port, ssl=tls
                    )
                setup: list[asyncio.Future[Any]] = []
                if t.password is not None:
                    auth = ("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)
                    setup.append(_call(conn, auth))
                if t.db:
                    setup.append(_call(conn, ("SELECT", t.db)))
                try:
                    for fut in setup:
                        await fut
                except BaseException:
                    conn.close()
                    raise
        except TimeoutError:
            raise RespConnectionError(
                f"Redis did not accept a connection within {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise RespConnectionError(f"cannot connect to Redis ({exc.strerror or exc})") from None
        return conn

    async def call(self, *args: Arg) -> Any:
        """Send one command and await its reply."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        return await _call(conn, args)

    async def call_encoded(self, command: bytes) -> Any:
        """:meth:`call` for a command already encoded (:func:`command_head` + :func:`tail`)."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        fut: asyncio.Future[Any] = conn._loop.create_future()
        conn.queue(command, fut)
        return await fut

    def send(
        self, command: tuple[Arg, ...] | bytes, callback: ReplyCallback | None = None, lazy: bool = False
    ) -> bool:
        """Send one command (its arguments, or encoded already) without awaiting its reply
        (handed to ``callback``, an exception included). False: not connected, nothing was sent
        (await :meth:`call`). ``lazy``: the command may wait up to :data:`LAZY_WRITE` seconds to
        be written with the next one (one write, one wake-up of Redis, for both)."""
        conn = self._conn
        if conn is None or conn.closed:
            return False
        conn.queue(command if isinstance(command, bytes) else encode(command), callback, lazy)
        return True

    async def drain(self, within: float) -> None:
        """Wait (up to ``within`` s) until every command sent so far has its reply: Redis
        answers in order, so a ``PING`` sent now is answered after all of them."""
        if self.connected:
            try:
                async with asyncio.timeout(within):
                    await self.call("PING")
            except (TimeoutError, RespConnectionError, ReplyError) as exc:
                log.warning("commands to Redis still unanswered at close: %s", exc.__class__.__name__)

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _call(conn: _Connection, args: tuple[Arg | None, ...]) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = conn._loop.create_future()
    conn.queue(encode(tuple(a for a in args if a is not None)), fut)
    return fut
