"""Response heads that the gateway encodes itself, written by uvicorn without its header loop.

uvicorn (httptools) turns an ASGI ``http.response.start`` into the response head one header at
a time: two pattern checks, a lower-casing, three comparisons and a list extension per header,
~4,000 CPU instructions each; with the header list built from a dict of text first, a gateway
response with its 6 rate-limit headers spent ~60,000 instructions, 8 % of the request, on its
head (callgrind, bench/cpu_per_request.py). The gateway's own headers are all its own making
(constants, numbers, generated ids), so it encodes them as header lines in one go instead
(:func:`head_lines`, and ``admission.headers.rate_limit_headers``), and the server writes them
as they are.

:class:`RawHeadCycle` is uvicorn's ``RequestResponseCycle`` with one more kind of start
message: one with :data:`HEAD` (the encoded header lines, ``b"name: value\\r\\n"`` each) and
:data:`LENGTH` (the body's length, or None for a chunked body) instead of ``headers``. The
status line, uvicorn's default headers (``date``), ``connection: close`` when the connection
is not kept alive, ``transfer-encoding: chunked`` and the access log line are written exactly
as uvicorn writes them; every other message, and a start message without :data:`HEAD`, goes to uvicorn's own
``send``. :func:`install` puts the class in the place of uvicorn's (the protocol looks it up
for every request), only for the uvicorn releases it was checked against
(:data:`UVICORN_TESTED`); elsewhere nothing changes. The application sends :data:`HEAD` only
to a ``send`` that is bound to a :class:`RawHeadCycle` (:func:`takes_raw_head`), so under any
other server or an in-process test client the usual ``headers`` list goes out.
"""

from __future__ import annotations

import re
from typing import Any

HEAD = "claudestore.head"  # in an http.response.start message: the header lines, encoded
LENGTH = "claudestore.length"  # ... and the body's length (None: chunked)
UVICORN_TESTED = ((0, 30), (0, 56))  # [lowest, highest) uvicorn release (major, minor) checked

# What uvicorn lets through: names that are RFC 9110 tokens, values without control characters
# but tab. Checked once over all names (joined by "-", itself a token character) and all values
# (joined by a tab) instead of twice per header.
_NAMES = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

RawHeadCycle: Any = None  # the class, once installed


def head_lines(headers: dict[str, str]) -> bytes:
    """``headers`` as header lines; ValueError when one would not be a valid header."""
    if not headers:
        return b""
    if (
        "" in headers
        or not _NAMES.fullmatch("-".join(headers))
        or _BAD_VALUE.search("\t".join(headers.values()))
    ):
        raise ValueError(f"invalid response header in {sorted(headers)}")
    return "".join([f"{k}: {v}\r\n" for k, v in headers.items()]).encode("latin-1")


def takes_raw_head(send: Any) -> bool:
    """``send`` is a :class:`RawHeadCycle`'s: it takes start messages with :data:`HEAD`."""
    return RawHeadCycle is not None and type(getattr(send, "__self__", None)) is RawHeadCycle


def _version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def install() -> bool:
    """Put :class:`RawHeadCycle` in the place of uvicorn's ``RequestResponseCycle``. False:
    a uvicorn release it was not checked against, or no httptools (nothing changed)."""
    global RawHeadCycle
    if RawHeadCycle is not None:
        return True
    try:
        import uvicorn
        from uvicorn.protocols.http import httptools_impl
        from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
    except ImportError:
        return False
    low, high = UVICORN_TESTED
    if not low <= _version(uvicorn.__version__) < high:
        return False
    base = httptools_impl.RequestResponseCycle
    status_lines: dict[int, bytes] = httptools_impl.STATUS_LINE

    class _RawHeadCycle(base):  # type: ignore[misc, valid-type]
        async def send(self, message: Any) -> None:
            head = message.get(HEAD)
            if head is None or self.response_started:
                return await super().send(message)  # uvicorn's own (which also refuses a second start)
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                return
            if message["type"] != "http.response.start" or message.get("headers"):
                raise RuntimeError(f"{HEAD} goes in an http.response.start message, without headers")
            self.response_started = True
            self.waiting_for_100_continue = False
            status = message["status"]
            if self.access_log:
                scope = self.scope
                self.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                        get_path_with_query_string(scope), scope["http_version"], status)  # fmt: skip
            content = [status_lines[status]]
            for name, value in self.default_headers:  # uvicorn's own (date)
                content += (name, b": ", value, b"\r\n")
            content.append(head)
            length = message.get(LENGTH)
            if length is not None:
                self.expected_content_length = length
                self.chunked_encoding = False
            if not self.keep_alive:
                content.append(b"connection: close\r\n")
            if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status not in (204, 304):
                self.chunked_encoding = True
                content.append(b"transfer-encoding: chunked\r\n")
            content.append(b"\r\n")
            self.transport.write(b"".join(content))

    _RawHeadCycle.__name__ = _RawHeadCycle.__qualname__ = "RawHeadCycle"
    httptools_impl.RequestResponseCycle = _RawHeadCycle  # type: ignore[misc]
    RawHeadCycle = _RawHeadCycle
    return True
