"""Raw HTTP requests to the e2e gateway (tests/test_e2e_http_*.py): the conversation every test
sends, the headers of each API's client, and the check that a response carries its request id.
"""

from __future__ import annotations

import httpx

from tests.support.servers import Gateway

HELLO = [{"role": "user", "content": "Hello, Claude"}]


def anthropic_headers(gateway: Gateway, **extra: str) -> dict[str, str]:
    return {
        "x-api-key": gateway.key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **extra,
    }


def openai_headers(gateway: Gateway, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.key}", "content-type": "application/json", **extra}


def check_request_ids(resp: httpx.Response) -> str:
    rid = resp.headers.get("request-id")
    assert rid is not None and rid.startswith("req_"), dict(resp.headers)
    assert resp.headers.get("x-request-id") == rid
    return rid
