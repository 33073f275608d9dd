"""A lean HTTP/1.1 client for upstream calls: keep-alive pools over asyncio protocols.

The gateway asks little of its HTTP client: POST a body it already holds as bytes, get the
status and headers, then the body as it arrives (with back-pressure, so a fast upstream and
a slow client do not fill memory), reuse connections, TLS, gzip/deflate, a connect timeout
and a bound on open connections. aiohttp does all of that and much more, and spent about
155 µs of CPU per request doing it (bench/RESULTS.md, session 2), a third of the gateway's
whole cost; this client does only that, on httptools' parser (llhttp, the parser of Node.js
and of uvicorn's server side). Measured A/B (bench/cpu_per_request.py, one request at a
time): the gateway's CPU per pass-through request fell from ~570 to ~360 µs.

What it does not do, on purpose: redirects, cookies, proxies from the environment, HTTP/2,
``Expect: 100-continue``, request bodies that are streamed. Errors are
``UpstreamConnectionError`` (``ConnectTimeout`` for the connect timeout); their messages never
name the upstream's address, so they can be shown to clients.
"""

from claudestore.providers.http.pool import HTTPClient
from claudestore.providers.http.response import HIGH_WATER, Response
from claudestore.providers.http.wire import (
    ConnectTimeout,
    Headers,
    Origin,
    UpstreamConnectionError,
    check_header,
    encode_head,
    split_url,
)

__all__ = [
    "HIGH_WATER",
    "ConnectTimeout",
    "HTTPClient",
    "Headers",
    "Origin",
    "Response",
    "UpstreamConnectionError",
    "check_header",
    "encode_head",
    "split_url",
]
