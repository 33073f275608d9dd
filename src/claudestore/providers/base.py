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

import orjson

from claudestore.config import UpstreamConfig
from claudestore.core.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout
from claudestore.providers.http import (
    ConnectTimeout,
    HTTPClient,
    Response,
    UpstreamConnectionError,
    check_header,
    encode_head,
    split_url,
)

WireFormat = Literal["anthropic", "openai"]
Operation = Literal["generate", "count_tokens"]

log = logging.getLogger("claudestore.providers")

__all__ = ["Operation", "Provider", "UpstreamConnectionError", "UpstreamResponse", "WireFormat"]


class UpstreamResponse:
    """A 2xx response from an upstream; read it once, as JSON or as a chunk stream."""

    __slots__ = ("_chunk_iter", "_idle", "_pending", "_resp", "headers", "status")

    def __init__(self, resp: Response, idle_timeout: float) -> None:
        self._resp = resp
        self._idle = idle_timeout
        self._chunk_iter: AsyncIterator[bytes] | None = None
        self._pending: asyncio.Future[bytes] | None = None
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def json(self) -> Any:
        resp = self._resp
        try:
            if resp.complete:  # the whole body has arrived: reading it cannot wait
                raw = resp.read_nowait()
            else:
                async with asyncio.timeout(self._idle):
                    raw = await resp.read()
        except TimeoutError:
            raise UpstreamTimeout("The upstream did not finish its response in time.") from None
        except UpstreamConnectionError as exc:
            raise UpstreamError(502, f"The upstream connection failed: {exc}") from None
        finally:
            resp.close()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, "The upstream answered with a body that is not JSON.") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive. Raises ``TimeoutError`` when idle too long and
        ``UpstreamConnectionError`` when the connection breaks."""
        resp = self._resp
        loop = asyncio.get_running_loop()
        while True:
            chunk = await resp.readany(loop.time() + self._idle)
            if not chunk:
                return
            yield chunk

    async def read(self, deadline: float) -> bytes:
        """The next body bytes as they arrive (``b""`` at the end). Raises ``TimeoutError`` at
        ``deadline`` (event-loop time; the read can be resumed) and ``UpstreamConnectionError``
        when the connection breaks."""
        if type(self).chunks is not UpstreamResponse.chunks:
            return await self._read_chunks(deadline)
        resp = self._resp
        data = resp.read_nowait()  # what has arrived already (raises as readany() would)
        if data or resp.complete:
            return data
        return await resp.readany(None if deadline == float("inf") else deadline)
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
        """Done with the exchange: a connection still receiving the body is dropped (so the
        upstream stops generating); a finished one is already back in the pool."""
        self._resp.close()

    def release(self) -> None:
        self._resp.close()


class Provider:
    """One configured upstream. Subclasses set ``format`` and build URLs and headers."""

    format: WireFormat

    def __init__(self, config: UpstreamConfig, client: HTTPClient) -> None:
        self.config = config
        self.name = config.name
        self.base_url = config.resolved_base_url()
        self.api_key = config.resolved_api_key()
        self._client = client
        t = config.timeouts
        self._connect = t.connect
        self._first_byte = t.first_byte if t.total is None else min(t.first_byte, t.total)
        self._idle = t.idle
        self._heads: dict[str, tuple[Any, bytes]] = {}

    def head(self, op: Operation) -> tuple[Any, bytes]:
        """The origin and the encoded request line plus fixed headers of ``op`` (built once)."""
        built = self._heads.get(op)
        if built is None:
            origin, target = split_url(self.url(op))
            built = self._heads[op] = (origin, encode_head(target, origin, self.fixed_headers(op)))
        return built

    # -- to be provided by each provider --------------------------------------------
    def url(self, op: Operation) -> str:
        raise NotImplementedError

    def fixed_headers(self, op: Operation) -> dict[str, str]:
        """The headers every request of ``op`` carries (content type, credentials, config)."""
        raise NotImplementedError

    def client_headers(self, client_headers: Mapping[str, str]) -> dict[str, str] | None:
        """Headers of this request taken from the client's (None: none)."""
        return None

    def headers(self, op: Operation, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Every header of one request (for logs and tests; ``open`` sends the encoded form)."""
        headers = dict(self.fixed_headers(op))
        headers.update(self.client_headers(client_headers) or {})
        return headers

    def error_message(self, body: Any) -> str | None:
        raise NotImplementedError

    async def count_tokens(self, body: dict[str, Any]) -> int | None:
        """The exact input tokens of ``body`` (in this provider's format) when the provider can
        count them itself; None to let the gateway ask the upstream."""
        return None

    # -- shared ---------------------------------------------------------------------
    async def open(self, op: Operation, body: bytes, client_headers: Mapping[str, str]) -> UpstreamResponse:
        origin, head = self.head(op)
        extra = self.client_headers(client_headers)
        if extra:
            lines = []
            for name, value in extra.items():
                try:
                    check_header(name, value)
                except ValueError:
                    raise InvalidRequest(f"The {name} header holds characters HTTP forbids.") from None
                lines.append(f"{name}: {value}\r\n")
            head += "".join(lines).encode("utf-8")
        try:
            async with asyncio.timeout(self._first_byte):
                resp = await self._client.post(origin, head, body, self._connect)
        except ConnectTimeout:
            raise UpstreamTimeout(
                f"Upstream {self.name!r} could not be connected to within {self._connect:g} s."
            ) from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"Upstream {self.name!r} did not answer within {self._first_byte:g} s."
            ) from None
        except UpstreamConnectionError as exc:
            # The cause's text may name the upstream's internal address: log it, never send it.
            log.warning("upstream %r could not be reached: %s (%s)", self.name, exc, exc.__cause__ or "")
            raise UpstreamError(502, f"Upstream {self.name!r} could not be reached: {exc}") from None
        if resp.status < 300:
            return UpstreamResponse(resp, self._idle)
        raise await self._error(resp)

    async def _error(self, resp: Response) -> GatewayError:
        try:
            async with asyncio.timeout(self._idle):
                raw = await resp.read()
        except (UpstreamConnectionError, TimeoutError):
            raw = b""
        finally:
            resp.close()
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
