"""uvicorn's response-header checks with what is known valid remembered (server/header_checks.py):
the same headers accepted and refused as uvicorn's own patterns, on a real uvicorn server, and
the gateway's responses without a ``server`` header."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from uvicorn.protocols.http import httptools_impl

from claudestore.server import header_checks
from claudestore.server.header_checks import LONGEST_KEPT, NAMES_KEPT, VALUES_KEPT, RememberedSearch
from tests.support.servers import Gateway, uvicorn_thread

HEADER_RE = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')  # uvicorn 0.30 .. 0.55
HEADER_VALUE_RE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")

NAMES = [
    b"anthropic-ratelimit-requests-limit", b"request-id", b"content-length", b"x", b"",
    b"bad name", b"bad:name", b"bad\r\nname", b"(x)", b"x\x7f", b"caf\xc3\xa9", b"a\tb", b"we{ird}",
]  # fmt: skip
VALUES = [
    b"2000000000", b"0", b"", b"2026-12-07T23:31:12Z", b"req_011CV", b"text/event-stream; charset=utf-8",
    b"a\tb", b"caf\xc3\xa9", b"12\r\n", b"1\n2", b"\x00", b"7\x7f", b"\xd9\xa3", b"\xef\xbc\x91",
]  # fmt: skip


def test_same_verdicts_as_uvicorn_patterns_every_time() -> None:
    names, values = RememberedSearch(HEADER_RE, NAMES_KEPT), RememberedSearch(HEADER_VALUE_RE, VALUES_KEPT)
    for _ in range(3):  # the second and third time from what the first remembered
        for name in NAMES:
            assert (names.search(name) is None) == (HEADER_RE.search(name) is None), name
        for value in VALUES:
            assert (values.search(value) is None) == (HEADER_VALUE_RE.search(value) is None), value
    assert b"bad name" not in names and b"request-id" in names
    assert b"12\r\n" not in values and b"2000000000" in values
    with pytest.raises(TypeError):
        names.search(bytearray(b"x-h"))  # ASGI headers are bytes


def test_remembers_a_bounded_number_of_texts() -> None:
    names = RememberedSearch(HEADER_RE, NAMES_KEPT)
    for i in range(NAMES_KEPT + 50):
        assert names.search(b"x-h%d" % i) is None
        assert len(names) <= NAMES_KEPT
    assert names.search(b"x h") is not None and b"x h" not in names
    long = b"x" * (LONGEST_KEPT + 1)
    assert names.search(long) is None and long not in names  # valid, searched every time


def test_installs_on_this_uvicorn() -> None:
    assert header_checks.install()
    assert isinstance(httptools_impl.HEADER_RE, RememberedSearch)
    assert isinstance(httptools_impl.HEADER_VALUE_RE, RememberedSearch)
    assert header_checks.install()  # again: already in place


async def _echo_header(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering with the header named in the query (?name=..&value=..)."""
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"], keep_blank_values=True)
    headers = [(query[b"name"][0], query[b"value"][0]), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    assert header_checks.install()
    with uvicorn_thread(_echo_header) as url:
        yield url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-limit-requests", "60"),
        ("x-time", "2026-12-07T23:31:12Z"),
    ],
)
def test_real_uvicorn_sends_valid_headers(echo_url: str, name: str, value: str) -> None:
    response = httpx.get(echo_url, params={"name": name, "value": value})
    assert response.status_code == 200 and response.headers[name] == value


@pytest.mark.parametrize(
    ("name", "value"),
    [("x-bad name", "1"), ("x-ratelimit-limit-requests", "60\r\nset-cookie: a=b"), ("x-ok", "6\x000")],
)
def test_real_uvicorn_still_refuses_invalid_headers(echo_url: str, name: str, value: str) -> None:
    if HEADER_RE.search(name.encode()) is None:  # a valid name: remembered by a valid response first
        assert httpx.get(echo_url, params={"name": name, "value": "1"}).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):  # uvicorn raised: nothing was written, connection closed
        httpx.get(echo_url, params={"name": name, "value": value})


async def test_gateway_sends_no_server_header(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.get("/v1/models", headers={"x-api-key": gateway.key})
    assert response.status_code == 200
    assert "server" not in response.headers and response.headers["date"]
