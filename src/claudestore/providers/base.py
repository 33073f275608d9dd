"""The provider contract: open one HTTP exchange with an upstream.

A provider turns (operation, body bytes, client headers) into one upstream HTTP
request and hands back an ``UpstreamResponse`` whose status is 2xx. Every failure
before the first byte is raised as a ``GatewayError`` (``UpstreamError`` with the
upstream's status, ``UpstreamTimeout``, or ``UpstreamError(502)`` when it can't be
reached), which the HTTP layer renders in the caller's format. Providers know
nothing of keys, accounts or the client's wire format.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import aiohttp
import orjson

from claudestore.config import UpstreamConfig
from claudestore.core.errors import GatewayError, UpstreamError, UpstreamTimeout

WireFormat = Literal["anthropic", "openai"]
Operation = Literal["generate", "count_tokens"]

log = logging.getLogger("claudestore.providers")

__all__ = ["Operation", "Provider", "UpstreamResponse", "WireFormat"]


class UpstreamResponse:
    """A 2xx response from an upstream; read it once, as JSON or as a chunk stream."""

    __slots__ = ("_chunk_iter", "_idle", "_pending", "_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, idle_timeout: float) -> None:
        self._resp = resp
        self._idle = idle_timeout
        self._chunk_iter: AsyncIterator[bytes] | None = None
        self._pending: asyncio.Future[bytes] | None = None
        self.status = resp.status
        self.headers = resp.headers

    async def json(self) -> Any:
        resp = self._resp
        try:
            if resp.content.is_eof():  # the whole body has arrived: reading it cannot wait
                raw = await resp.read()
            else:
                async with asyncio.timeout(self._idle):
                    raw = await resp.read()
        except TimeoutError:
            raise UpstreamTimeout("The upstream did not finish its response in time.") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(502, f"The upstream connection failed: {exc}") from None
        finally:
            self._resp.release()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, "The upstream answered with a body that is not JSON.") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive. Raises ``TimeoutError`` when idle too long and
        ``aiohttp.ClientError`` when the connection breaks."""
        content = self._resp.content
        while True:
            async with asyncio.timeout(self._idle):
                chunk = await content.readany()
            if not chunk:
                return
            yield chunk

    async def read(self, deadline: float) -> bytes:
        """The next body bytes as they arrive (``b""`` at the end). Raises ``TimeoutError`` at
        ``deadline`` (event-loop time; the read can be resumed) and ``aiohttp.ClientError``
        when the connection breaks."""
        if type(self).chunks is not UpstreamResponse.chunks:
            return await self._read_chunks(deadline)
        content = self._resp.content
        data = content.read_nowait()  # what has arrived already (raises as readany() would)
        if data or content.is_eof():
            return data
        async with asyncio.timeout_at(deadline):
            return await content.readany()

    async def _read_chunks(self, deadline: float) -> bytes:
        """``read`` for a response that makes its body in ``chunks()`` (no socket, e.g. a local
        model): a deadline leaves the next chunk pending instead of cancelling the generator."""
        pending: asyncio.Future[bytes] | None = getattr(self, "_pending", None)
        if pending is None:
            chunks = getattr(self, "_chunk_iter", None)
            if chunks is None:
                chunks = self._chunk_iter = self.chunks().__aiter__()
            pending = self._pending = asyncio.ensure_future(anext(chunks, b""))
        loop = asyncio.get_running_loop()
        try:
            done, _ = await asyncio.wait((pending,), timeout=max(0.0, deadline - loop.time()))
        except asyncio.CancelledError:
            self.stop_reading()
            raise
        if not done:
            raise TimeoutError
        self._pending = None
        return pending.result()

    def stop_reading(self) -> None:
        """Drop a read that a deadline left pending (see ``_read_chunks``)."""
        pending = getattr(self, "_pending", None)
        if pending is not None:
            pending.cancel()
            self._pending = None

    def close(self) -> None:
        """Abort the exchange (drops the connection so the upstream stops generating)."""
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


class Provider:
    """One configured upstream. Subclasses set ``format`` and build URLs and headers."""

    format: WireFormat

    def __init__(self, config: UpstreamConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.name = config.name
        self.base_url = config.resolved_base_url()
        self.api_key = config.resolved_api_key()
        self._session = session
        t = config.timeouts
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=t.connect, sock_connect=t.connect, sock_read=None
        )
        self._first_byte = t.first_byte if t.total is None else min(t.first_byte, t.total)
        self._idle = t.idle

    # -- to be provided by each provider --------------------------------------------
    def url(self, op: Operation) -> str:
        raise NotImplementedError

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        raise NotImplementedError

    def error_message(self, body: Any) -> str | None:
        raise NotImplementedError

    async def count_tokens(self, body: dict[str, Any]) -> int | None:
        """The exact input tokens of ``body`` (in this provider's format) when the provider can
        count them itself; None to let the gateway ask the upstream."""
        return None

    # -- shared ---------------------------------------------------------------------
    async def open(self, op: Operation, body: bytes, client_headers: Mapping[str, str]) -> UpstreamResponse:
        url = self.url(op)
        try:
            async with asyncio.timeout(self._first_byte):
                resp = await self._session.post(
                    url, data=body, headers=self.headers(client_headers), timeout=self._timeout
                )
        except aiohttp.ServerTimeoutError:  # a TimeoutError too: the connect timeout
            raise UpstreamTimeout(
                f"Upstream {self.name!r} could not be connected to within {self.config.timeouts.connect:g} s."
            ) from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"Upstream {self.name!r} did not answer within {self._first_byte:g} s."
            ) from None
        except aiohttp.ClientError as exc:
            # The exception text names the upstream's internal address: log it, never send it.
            log.warning("upstream %r could not be reached: %s", self.name, exc)
            raise UpstreamError(
                502, f"Upstream {self.name!r} could not be reached ({type(exc).__name__})."
            ) from None
        if resp.status < 300:
            return UpstreamResponse(resp, self._idle)
        raise await self._error(resp)

    async def _error(self, resp: aiohttp.ClientResponse) -> GatewayError:
        try:
            raw = await resp.read()
        except aiohttp.ClientError:
            raw = b""
        finally:
            resp.release()
        try:
            message = self.error_message(orjson.loads(raw)) if raw else None
        except orjson.JSONDecodeError:
            message = None
        if not message:
            snippet = raw[:200].decode("utf-8", "replace").strip()
            message = snippet or f"HTTP {resp.status}"
        retry_after = _retry_after(resp.headers)
        if resp.status in (401, 403):
            # The upstream refused the gateway's own credentials: that is the operator's problem,
            # not the client's, and its message may quote the upstream key.
            log.error("upstream %r refused the gateway's credentials (HTTP %s)", self.name, resp.status)
            return UpstreamError(
                502, f"Upstream {self.name!r} refused the gateway's credentials; the operator must fix them."
            )
        if self.api_key and self.api_key in message:
            message = message.replace(self.api_key, "[redacted]")
        return UpstreamError(resp.status, f"Upstream {self.name!r} error: {message}", retry_after=retry_after)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None
