"""Security review (issue 9), access: points 4, 5, 8 and 9 of SECURITY.md, one test per point.

One customer can never read another's data; admin routes refuse customer keys and anonymous
callers, customer routes refuse anonymous and operator callers (and authenticate before they
validate); ``count_tokens`` enforces the plan; CORS is closed by default; web pages carry the
security headers. The gateway is ``sec`` (tests/support/security.py). Gaps found are pinned as
strict xfail tests whose reason starts with ``BUG:`` or ``GAP:``; SECURITY.md maps every point to
its test.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx

from claudestore.api.admin import admin_app
from tests.support.envelopes import anthropic_error
from tests.support.security import (
    ADMIN_PASSWORD,
    Sec,
    admin_headers,
    anthropic_auth,
    bearer,
    make_customer,
    message,
)

pytest_plugins = ["tests.support.security"]  # the sec gateway


# -- 4. one customer can never read another's data ------------------------------------------------


def test_cross_account_isolation(sec: Sec) -> None:
    """Customer A tries every /v1/account endpoint with B's ids (keys, ledger rows, account)."""
    with sec.client() as http:
        a = make_customer(http, "alice")
        b = make_customer(http, "bob")
        # B uses the gateway and makes a second key; A makes one request.
        b_request_ids = set()
        for model in ("claude-test", "gpt-test"):
            r = http.post(
                "/v1/messages", json=message(model, "bob's secret prompt"), headers=anthropic_auth(b.key)
            )
            assert r.status_code == 200
            b_request_ids.add(r.headers["request-id"])
        b2 = http.post("/v1/account/keys", json={"name": "bob-second"}, headers=bearer(b.key))
        assert b2.status_code == 201, b2.text
        b_key_ids = {b.key_id, b2.json()["id"]}
        r = http.post("/v1/messages", json=message("claude-test", "alice"), headers=anthropic_auth(a.key))
        assert r.status_code == 200
        a_request_id = r.headers["request-id"]
        time.sleep(0.3)  # ledger flush
        b_rows = http.get(
            "/admin/usage/requests", params={"account_id": b.account_id}, headers=admin_headers()
        ).json()["data"]
        assert {row["request_id"] for row in b_rows} == b_request_ids
        b_row_ids = {row["id"] for row in b_rows}

        def as_a(method: str, path: str, **kwargs: Any) -> httpx.Response:
            resp = http.request(method, path, headers=bearer(a.key), **kwargs)
            text = resp.text
            assert b.key not in text and b.name not in text and "bob" not in text, (path, text[:300])
            assert not any(rid in text for rid in b_request_ids), (path, text[:300])
            return resp

        overview = as_a("GET", "/v1/account", params={"account_id": b.account_id}).json()
        assert overview["account"]["id"] == a.account_id and overview["key_id"] == a.key_id
        keys = as_a("GET", "/v1/account/keys", params={"account_id": b.account_id}).json()["data"]
        assert {k["id"] for k in keys} == {a.key_id}
        for group_by in (None, "key", "model", "day"):
            params: dict[str, Any] = {"account_id": b.account_id, "key_id": b.key_id}
            if group_by:
                params["group_by"] = group_by
            usage = as_a("GET", "/v1/account/usage", params=params).json()
            assert usage["total"]["requests"] == 1, usage
            if group_by == "key":
                assert {row["key_id"] for row in usage["data"]} == {a.key_id}
        for before_id in (None, max(b_row_ids) + 1, *b_row_ids):
            params = {"limit": 500, "account_id": b.account_id, "key_id": b.key_id}
            if before_id is not None:
                params["before_id"] = before_id
            rows = as_a("GET", "/v1/account/requests", params=params).json()["data"]
            assert {row["request_id"] for row in rows} <= {a_request_id}, rows
        for key_id in sorted(b_key_ids):
            resp = as_a("DELETE", f"/v1/account/keys/{key_id}")
            assert resp.status_code == 404 and anthropic_error(resp)["type"] == "not_found_error"
        # The body cannot name another account either.
        resp = as_a("POST", "/v1/account/keys", json={"name": "x", "account_id": b.account_id})
        assert resp.status_code == 400
        # B's keys still work: A's attempts changed nothing.
        assert http.get("/v1/account", headers=bearer(b.key)).status_code == 200
        assert http.get("/v1/account", headers=bearer(b2.json()["key"])).status_code == 200
        # A code B already redeemed says so without naming B.
        code = http.post("/admin/codes", json={"credit_usd": "1"}, headers=admin_headers()).json()["data"][0][
            "code"
        ]
        assert http.post("/v1/account/redeem", json={"code": code}, headers=bearer(b.key)).status_code == 200
        resp = as_a("POST", "/v1/account/redeem", json={"code": code})
        assert 400 <= resp.status_code < 500


# -- 5. admin routes refuse customer keys and anonymous callers -----------------------------------


def _admin_routes() -> list[tuple[str, str]]:
    app = admin_app(None, admin_key=ADMIN_PASSWORD)  # type: ignore[arg-type]
    found = []
    for route in app.routes:
        path = route.path.replace("{account_id:int}", "1").replace("{key_id:int}", "1")  # type: ignore[attr-defined]
        path = path.replace("{plan_id:int}", "1").replace("{user_id:int}", "1").replace("{code_id:int}", "1")
        path = path.replace("{model:path}", "claude-test")
        found.extend((method, path) for method in sorted(route.methods or ()) if method != "HEAD")  # type: ignore[attr-defined]
    return found


def test_admin_routes_refuse_customer_keys_and_anonymous_callers(sec: Sec) -> None:
    routes = _admin_routes()
    assert len(routes) >= 30, routes
    with sec.client() as http:
        customer = make_customer(http, "not-admin")
        callers = {
            "customer key": (bearer(customer.key), 403, "permission_error"),
            "customer key in x-api-key": ({"x-api-key": customer.key}, 403, "permission_error"),
            "operator key": (bearer(sec.key), 403, "permission_error"),
            "anonymous": ({}, 401, "authentication_error"),
            "wrong admin key": (bearer(ADMIN_PASSWORD + "!"), 401, "authentication_error"),
            "basic auth": ({"authorization": "Basic " + ADMIN_PASSWORD}, 401, "authentication_error"),
        }
        for method, path in [*routes, ("GET", "/admin/nowhere"), ("GET", "/admin/")]:
            # Each route from an address of its own: its 4 refused keys stay under the
            # failed-authentication limit (point 6), which this test is not about.
            with sec.client() as route_http:
                for who, (headers, status, kind) in callers.items():
                    resp = route_http.request(
                        method, path, headers=headers, json={} if method in ("POST", "PATCH", "PUT") else None
                    )
                    assert resp.status_code == status, (who, method, path, resp.text[:200])
                    assert anthropic_error(resp)["type"] == kind
        # Nothing was changed by the refused calls.
        assert http.get("/admin/accounts/1", headers=admin_headers()).status_code == 200


CUSTOMER_ROUTES = [
    ("GET", "/v1/account"),
    ("GET", "/v1/account/usage"),
    ("GET", "/v1/account/requests"),
    ("GET", "/v1/account/keys"),
    ("DELETE", "/v1/account/keys/1"),
    ("POST", "/v1/account/keys"),
    ("POST", "/v1/account/redeem"),
]


def test_customer_routes_refuse_anonymous_and_operator_callers(sec: Sec) -> None:
    """With a well-formed body: 401 without a key, 403 for keys that belong to no account."""
    bodies = {
        "/v1/account/keys": {"name": "x"},
        "/v1/account/redeem": {"code": "CS-AAAA-AAAA-AAAA-AAAA-AAAA"},
    }
    with sec.client() as http:
        for method, path in CUSTOMER_ROUTES:
            body = bodies.get(path) if method == "POST" else None
            for headers, status in (
                ({}, 401),
                (bearer("sk-cs-" + "A" * 43), 401),
                (bearer(ADMIN_PASSWORD), 401),
                (bearer(sec.key), 403),
            ):
                resp = http.request(method, path, headers=headers, json=body)
                assert resp.status_code == status, (method, path, headers, resp.text[:200])
                anthropic_error(resp)


def test_customer_routes_authenticate_before_validating(sec: Sec) -> None:
    with sec.client() as http:
        for path, body in (
            ("/v1/account/keys", {"bogus": 1}),
            ("/v1/account/redeem", {}),
            ("/v1/account/redeem", None),
        ):
            resp = http.post(path, json=body)
            assert resp.status_code == 401, (path, resp.text[:200])
        for params in ({"group_by": "bogus"}, {"from": "yesterday"}):
            resp = http.get("/v1/account/usage", params=params)
            assert resp.status_code == 401, (params, resp.text[:200])


def test_count_tokens_enforces_the_plan_and_account_state(sec: Sec) -> None:
    with sec.client() as http:
        h = admin_headers()
        name = f"claude-only-{secrets.token_hex(3)}"
        http.post(
            "/admin/plans", json={"name": name, "allowed_models": ["claude-*"]}, headers=h
        ).raise_for_status()
        account = http.post("/admin/accounts", json={"name": name}, headers=h).json()
        http.post(
            f"/admin/accounts/{account['id']}/subscription", json={"plan": name}, headers=h
        ).raise_for_status()
        key = http.post(f"/admin/accounts/{account['id']}/keys", json={"name": name}, headers=h).json()["key"]
        outside = message("gpt-test", "one two three")
        assert http.post("/v1/messages", json=outside, headers=anthropic_auth(key)).status_code == 403
        resp = http.post("/v1/messages/count_tokens", json=outside, headers=anthropic_auth(key))
        assert resp.status_code == 403, f"model outside the plan: {resp.status_code} {resp.text[:200]}"
        http.patch(f"/admin/accounts/{account['id']}", json={"disabled": True}, headers=h).raise_for_status()
        inside = message("claude-test", "one two three")
        assert http.post("/v1/messages", json=inside, headers=anthropic_auth(key)).status_code == 403
        resp = http.post("/v1/messages/count_tokens", json=inside, headers=anthropic_auth(key))
        assert resp.status_code == 403, f"disabled account: {resp.status_code} {resp.text[:200]}"


# -- 8. CORS closed by default, 9. security headers on web pages ----------------------------------


def test_cors_closed_by_default(sec: Sec) -> None:
    origin = "https://evil.example"
    with sec.client() as http:
        for path in (
            "/v1/messages",
            "/v1/chat/completions",
            "/v1/messages/count_tokens",
            "/v1/models",
            "/admin/accounts",
            "/v1/account",
            "/healthz",
            "/metrics",
        ):
            preflight = http.options(
                path,
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "x-api-key, authorization, content-type",
                },
            )
            assert preflight.status_code < 500
            simple = http.get(path, headers={"origin": origin, **bearer(sec.key)})
            for resp in (preflight, simple):
                cors = {k for k in resp.headers if k.lower().startswith("access-control-")}
                assert not cors, (path, resp.status_code, dict(resp.headers))


def test_security_headers_on_web_pages(sec: Sec) -> None:
    """Every web store page (public, log-in, errors, static) carries a strict CSP and the
    anti-framing / no-sniff headers; pages are not cached. The logged-in pages are covered in
    tests/test_web_auth.py::test_security_headers_on_every_page."""
    with sec.client() as http:
        for path in (
            "/",
            "/plans",
            "/docs",
            "/docs/quickstart",
            "/signup",
            "/login",
            "/console/login",
            "/dashboard/nope",
            "/static/app.css",
        ):
            resp = http.get(path)
            assert resp.status_code in (200, 303, 404), (path, resp.status_code)
            csp = resp.headers.get("content-security-policy", "")
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
            assert resp.headers.get("x-frame-options") == "DENY", path
            assert resp.headers.get("x-content-type-options") == "nosniff", path
            assert resp.headers.get("referrer-policy") == "same-origin", path
            if not path.startswith("/static/"):
                assert resp.headers.get("cache-control") == "no-store", path
