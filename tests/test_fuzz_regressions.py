"""Inputs the fuzzers found harmful, checked on both database backends (the shared ``gateway``).

Read-only or harmless to the shared database. The fuzzers themselves (test_fuzz_endpoints.py)
run on SQLite only; these cases depend on the backend (column types, text encoding).
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.support.envelopes import anthropic_error
from tests.support.servers import ADMIN_KEY, Gateway

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def _is_postgres(gateway: Gateway) -> bool:
    return gateway.database_url.startswith("postgres")


def test_huge_path_ids(gateway: Gateway) -> None:
    idents = [2**63, 10**30]
    if _is_postgres(gateway):
        idents.insert(0, 2**31)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for ident in idents:
            for path in (f"/admin/accounts/{ident}", f"/admin/keys/{ident}", f"/admin/plans/{ident}"):
                resp = http.get(path, headers=ADMIN)
                assert resp.status_code == 404, (path, resp.status_code, resp.text[:200])
                anthropic_error(resp)


def test_in_range_path_ids_are_404(gateway: Gateway) -> None:
    """The largest ids both backends store are a plain 404 (what the huge ids should get too)."""
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for path in ("/admin/accounts/2147483647", "/admin/keys/2147483647", "/admin/plans/0"):
            resp = http.get(path, headers=ADMIN)
            assert resp.status_code == 404, (path, resp.text[:200])
            anthropic_error(resp)


def test_usage_times_at_the_edge_of_the_calendar(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for value in (
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01000+0001",
            "9999-12-31",
        ):
            for name in ("from", "to"):
                resp = http.get("/admin/usage", params={name: value}, headers=ADMIN)
                assert resp.status_code in (200, 400), (name, value, resp.status_code, resp.text[:200])
                if resp.status_code == 400:
                    anthropic_error(resp)


@pytest.mark.parametrize("value", ["nul\x00inside", "\u202eRTL\u200f", "\U0001f980 crab", "e\u0301"])
def test_text_fields_with_unicode_edge_cases(gateway: Gateway, value: str) -> None:
    """NUL, bidi marks, astral and combining characters in an account name (admin API) and a key
    name (the customer's own API): stored and read back, or refused with a 400 — never a 500."""
    name = f"{value}-{secrets.token_hex(3)}"
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        resp = http.post("/admin/accounts", json={"name": name}, headers=ADMIN)
        if resp.status_code == 201:
            account = resp.json()
            assert http.get(f"/admin/accounts/{account['id']}", headers=ADMIN).json()["name"] == name.strip()
        else:
            assert resp.status_code == 400, resp.text[:300]
            anthropic_error(resp)
            account = http.post(
                "/admin/accounts", json={"name": f"plain-{secrets.token_hex(3)}"}, headers=ADMIN
            ).json()
        key = http.post(f"/admin/accounts/{account['id']}/keys", json={"name": "k"}, headers=ADMIN).json()[
            "key"
        ]
        resp = http.post("/v1/account/keys", json={"name": name}, headers={"authorization": f"Bearer {key}"})
        if resp.status_code != 201:
            assert resp.status_code == 400, resp.text[:300]
            anthropic_error(resp)
