"""Inputs the fuzzers found harmful, checked on both database backends (the shared ``gateway``).

Read-only or harmless to the shared database. The fuzzers themselves (test_fuzz_endpoints.py)
run on SQLite only; these cases depend on the backend (column types, text encoding).
"""

from __future__ import annotations

import secrets
from pathlib import Path

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


# -- found by schemathesis against the OpenAPI document (tests/test_schemathesis.py) -------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/admin/keys", "account_id"),
        ("/admin/codes", "before_id"),
        ("/admin/usage", "account_id"),
        ("/admin/usage", "key_id"),
        ("/admin/usage/requests", "account_id"),
        ("/admin/usage/requests", "key_id"),
    ],
)
def test_query_ids_beyond_the_id_columns_are_400(gateway: Gateway, path: str, name: str) -> None:
    """PostgreSQL's INTEGER id columns cannot bind 2**31: that was a 500 there (SQLite took it)."""
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for value in (2**31, 2**63 - 1):
            resp = http.get(path, params={name: value}, headers=ADMIN)
            assert resp.status_code == 400, (path, name, value, resp.status_code, resp.text[:200])
            assert name in anthropic_error(resp)["message"]
        resp = http.get(path, params={name: 2**31 - 1}, headers=ADMIN)
        assert resp.status_code in (200, 404), (path, name, resp.status_code, resp.text[:200])
        account = http.post(
            "/admin/accounts", json={"name": f"q-{secrets.token_hex(3)}"}, headers=ADMIN
        ).json()
        resp = http.get(f"/admin/accounts/{account['id']}/credit", params={"before_id": 2**31}, headers=ADMIN)
        assert resp.status_code == 400, resp.text[:200]
        anthropic_error(resp)


@pytest.mark.parametrize("plan", [2**31, 2**40, "2147483648", "99999999999999999999999", "²", " ³ "])
def test_plan_idents_that_name_no_plan_are_404(gateway: Gateway, plan: int | str) -> None:
    """A plan id beyond the column (500 on PostgreSQL, and on SQLite past 64 bits) or a string
    of non-ASCII digits ("²".isdigit(), but int("²") fails: 500 on both) names no plan."""
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        account = http.post(
            "/admin/accounts", json={"name": f"p-{secrets.token_hex(3)}"}, headers=ADMIN
        ).json()
        resp = http.post(f"/admin/accounts/{account['id']}/subscription", json={"plan": plan}, headers=ADMIN)
        assert resp.status_code == 404, (plan, resp.status_code, resp.text[:200])
        anthropic_error(resp)
        resp = http.post("/admin/codes", json={"plan": plan, "credit_usd": "1"}, headers=ADMIN)
        assert resp.status_code == 404, (plan, resp.status_code, resp.text[:200])
        anthropic_error(resp)


def test_derived_cache_price_beyond_the_column_is_400(gateway: Gateway) -> None:
    """cache_write defaults to 1.25 x input: for an input above 79,999,999.2 that overflowed
    Numeric(14, 6) (a 500 on PostgreSQL; SQLite stored it)."""
    model = f"huge-{secrets.token_hex(3)}"
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        resp = http.put(f"/admin/prices/{model}", json={"input": "99999998", "output": "1"}, headers=ADMIN)
        assert resp.status_code == 400, resp.text[:200]
        assert "cache_write" in anthropic_error(resp)["message"]
        price = {"input": "99999998", "output": "1", "cache_write": "99999999"}
        resp = http.put(f"/admin/prices/{model}", json=price, headers=ADMIN)
        assert resp.status_code == 201, resp.text[:200]
        assert resp.json()["cache_read_per_mtok"] == "9999999.800000"
        assert http.delete(f"/admin/prices/{model}", headers=ADMIN).status_code == 200


def test_balance_stays_an_exact_integer(gateway: Gateway) -> None:
    """Top-ups of $1 billion (the largest one) used to overflow BIGINT on the tenth: a 500 on
    PostgreSQL, and on SQLite a balance silently turned into a float (1.1e+19 in the JSON).
    The balance is bounded at $4 billion either way; past it the change is refused with 409."""
    nanos = 10**18
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        account = http.post(
            "/admin/accounts", json={"name": f"b-{secrets.token_hex(3)}"}, headers=ADMIN
        ).json()
        credit = f"/admin/accounts/{account['id']}/credit"
        for _ in range(4):
            assert http.post(credit, json={"nanos": nanos}, headers=ADMIN).status_code == 201
        resp = http.post(credit, json={"nanos": 1}, headers=ADMIN)
        assert resp.status_code == 409, resp.text[:200]
        assert "most an account can hold" in anthropic_error(resp)["message"]
        balance = http.get(f"/admin/accounts/{account['id']}", headers=ADMIN).json()["balance"]
        assert balance == {"nanos": 4 * nanos, "usd": "4000000000.00"}
        adjust = {"nanos": -9 * nanos // 10, "kind": "adjustment"}
        assert http.post(credit, json=adjust, headers=ADMIN).status_code == 201
        assert (
            http.get(f"/admin/accounts/{account['id']}", headers=ADMIN).json()["balance"]["nanos"]
            == 31 * nanos // 10
        )
        resp = http.delete(f"/admin/accounts/{account['id']}", params={"force": "true"}, headers=ADMIN)
        assert resp.status_code == 200, resp.text[:200]


def test_decimals_are_shown_in_fixed_point(gateway: Gateway) -> None:
    """A price given as "1e3" was echoed as "1E+3" (Decimal's str); read back it was "1000.00"."""
    name = f"d-{secrets.token_hex(3)}"
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        resp = http.post(
            "/admin/plans", json={"name": name, "price_usd": "1e3", "price_multiplier": "2E0"}, headers=ADMIN
        )
        assert resp.status_code == 201, resp.text[:200]
        plan = resp.json()
        assert plan["price_usd"] in ("1000", "1000.00") and plan["price_multiplier"] in ("2", "2.0000"), plan
        assert http.delete(f"/admin/plans/{plan['id']}", headers=ADMIN).status_code == 200


def test_method_not_allowed_names_every_allowed_method(gateway: Gateway) -> None:
    """A 405 must carry Allow (RFC 9110); Starlette's named only the first route on the path."""
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        resp = http.put("/admin/plans/1", json={}, headers=ADMIN)
        assert resp.status_code == 405
        assert resp.headers["allow"] == "DELETE, GET, HEAD, PATCH"
        assert "use DELETE, GET, HEAD, PATCH" in anthropic_error(resp)["message"]
        resp = http.request("TRACE", "/v1/account/keys", headers={"x-api-key": gateway.key})
        assert resp.status_code == 405 and resp.headers["allow"] == "GET, HEAD, POST"
        anthropic_error(resp)


async def test_unexpected_errors_carry_the_request_id_headers(tmp_path: Path) -> None:
    """A 500 is answered by Starlette's outermost middleware, outside the one that adds the
    request-id headers: they were missing there (the body had the id)."""
    from claudestore.api.admin import admin_app
    from claudestore.storage.db import Database

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'no.db'}")  # cannot be opened
    app = admin_app(db, admin_key=ADMIN_KEY)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=ADMIN) as http:
        resp = await http.get("/admin/accounts")
    await db.close()
    assert resp.status_code == 500
    error = anthropic_error(resp)  # checks request-id == x-request-id == the body's request_id
    assert error["type"] == "api_error"


def test_nul_in_lookups_is_404_or_400(gateway: Gateway) -> None:
    """NUL in a plan name, a price's model (path) or the usage model filter reached PostgreSQL,
    which cannot compare text with it: a 500 there. Nothing stored holds NUL (the services
    refuse it on the way in), so lookups are 404 and the filter is a 400."""
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        account = http.post(
            "/admin/accounts", json={"name": f"n-{secrets.token_hex(3)}"}, headers=ADMIN
        ).json()
        for resp in (
            http.post(
                f"/admin/accounts/{account['id']}/subscription", json={"plan": "x\x00y"}, headers=ADMIN
            ),
            http.post("/admin/codes", json={"plan": "x\x00y", "credit_usd": "1"}, headers=ADMIN),
            http.get("/admin/prices/a%00b", headers=ADMIN),
            http.delete("/admin/prices/a%00b", headers=ADMIN),
        ):
            assert resp.status_code == 404, (resp.request.url, resp.status_code, resp.text[:200])
            anthropic_error(resp)
        resp = http.get("/admin/usage", params={"model": "a\x00b", "group_by": "model"}, headers=ADMIN)
        assert resp.status_code == 400, resp.text[:200]
        assert "NUL" in anthropic_error(resp)["message"]
