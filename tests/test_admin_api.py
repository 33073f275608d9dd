"""The admin API (/admin) and the customer account API (/v1/account) over ASGI, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from claudestore.api.account import account_app
from claudestore.api.admin import admin_app
from claudestore.storage.auth import KeyAuthenticator
from claudestore.storage.billing_models import UsageRecord
from claudestore.storage.db import Database
from claudestore.storage.keys import create_key
from claudestore.storage.models import ApiKey

pytest_plugins = ["tests.support.accounts_db"]  # the db and db_url fixtures, one database per backend

ADMIN_KEY = "admin-" + "x" * 40
USD = 1_000_000_000


class Credits:
    """Records on_credit calls, as the gateway's limiter would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    async def __call__(self, account_id: int, nanos: int, entry_id: int) -> None:
        self.calls.append((account_id, nanos, entry_id))


@pytest.fixture
def credits() -> Credits:
    return Credits()


def client(app: Any, key: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers)


@pytest_asyncio.fixture(loop_scope="session")
async def admin(db: Database, credits: Credits) -> AsyncIterator[httpx.AsyncClient]:
    async with client(admin_app(db, admin_key=ADMIN_KEY, on_credit=credits), ADMIN_KEY) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def account_api(db: Database, credits: Credits) -> AsyncIterator[Any]:
    auth = KeyAuthenticator(db, ttl=0.0, negative_ttl=0.0)
    yield account_app(db, auth.authenticate, on_credit=credits)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def error(response: httpx.Response, status: int, kind: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["request_id"] == response.headers["request-id"]
    assert response.headers["x-request-id"] == body["request_id"]
    if kind:
        assert body["error"]["type"] == kind
    return str(body["error"]["message"])


async def customer(admin: httpx.AsyncClient, name: str, plan: str | None = None) -> tuple[int, str, int]:
    """An account with a key: ``(account_id, raw_key, key_id)``."""
    account = ok(await admin.post("/admin/accounts", json={"name": name}), 201)
    if plan:
        ok(await admin.post(f"/admin/accounts/{account['id']}/subscription", json={"plan": plan}), 201)
    key = ok(await admin.post(f"/admin/accounts/{account['id']}/keys", json={"name": f"{name} key"}), 201)
    return account["id"], key["key"], key["id"]


async def add_usage(db: Database, account_id: int, key_id: int, n: int, when: datetime, **extra: Any) -> None:
    async with db.session() as s:
        s.add(
            UsageRecord(
                request_id=f"req_{account_id}_{n}",
                created_at=when,
                key_id=key_id,
                account_id=account_id,
                endpoint="anthropic",
                model=extra.pop("model", "claude-sonnet-4-6"),
                upstream="anthropic-prod",
                upstream_model="claude-sonnet-4-6-20260101",
                input_tokens=100,
                output_tokens=20,
                cost_nanos=extra.pop("cost_nanos", 600_000),
                status=200,
                **extra,
            )
        )
        await s.commit()


# -- admin authentication ----------------------------------------------------------------------


async def test_admin_auth(db: Database) -> None:
    async with db.session() as s:
        raw_customer, _ = await create_key(s, "customer")
        await s.commit()

    async with client(admin_app(db, admin_key=None)) as unconfigured:
        for key in (None, ADMIN_KEY):
            headers = {"x-api-key": key} if key else {}
            message = error(
                await unconfigured.get("/admin/accounts", headers=headers), 403, "permission_error"
            )
            assert "CLAUDESTORE_ADMIN_KEY" in message

    app = admin_app(db, admin_key=ADMIN_KEY)
    async with client(app) as anonymous:
        assert "Missing admin key" in error(
            await anonymous.get("/admin/accounts"), 401, "authentication_error"
        )
        assert "Missing admin key" in error(await anonymous.get("/admin/nowhere"), 401)
        wrong = await anonymous.get("/admin/accounts", headers={"authorization": "Bearer nope"})
        assert error(wrong, 401, "authentication_error") == "Invalid admin key."
        as_customer = await anonymous.get("/admin/plans", headers={"x-api-key": raw_customer})
        assert "customer keys cannot use the admin API" in error(as_customer, 403, "permission_error")
        unknown_key = "sk-cs-" + "A" * 43
        error(await anonymous.get("/admin/plans", headers={"x-api-key": unknown_key}), 401)
        assert ok(await anonymous.get("/admin/accounts", headers={"x-api-key": ADMIN_KEY})) == {"data": []}
        assert ok(await anonymous.get("/admin/accounts", headers={"authorization": f"bearer {ADMIN_KEY}"}))
    async with client(app, ADMIN_KEY) as authed:
        assert "No route for GET /admin/nowhere" in error(
            await authed.get("/admin/nowhere"), 404, "not_found_error"
        )
        error(await authed.put("/admin/accounts"), 405)


# -- admin round trips -------------------------------------------------------------------------


async def test_admin_accounts_members_plans_subscriptions_credit(
    db: Database, admin: httpx.AsyncClient, credits: Credits
) -> None:
    account = ok(await admin.post("/admin/accounts", json={"name": "Acme", "email": "ops@acme.test"}), 201)
    aid = account["id"]
    assert account["balance"] == {"nanos": 0, "usd": "0.00"} and account["status"] == "active"
    patched = ok(await admin.patch(f"/admin/accounts/{aid}", json={"kind": "organisation", "disabled": True}))
    assert patched["kind"] == "organisation" and patched["status"] == "disabled"
    assert ok(await admin.get("/admin/accounts?include_disabled=false")) == {"data": []}
    ok(await admin.patch(f"/admin/accounts/{aid}", json={"disabled": False}))

    member = ok(
        await admin.post(f"/admin/accounts/{aid}/members", json={"email": "ann@acme.test", "role": "owner"}),
        201,
    )
    assert (
        ok(await admin.post(f"/admin/accounts/{aid}/members", json={"email": "ann@acme.test"}))["role"]
        == "member"
    )
    assert [m["email"] for m in ok(await admin.get(f"/admin/accounts/{aid}/members"))["data"]] == [
        "ann@acme.test"
    ]
    ok(await admin.delete(f"/admin/accounts/{aid}/members/{member['user_id']}"))
    error(await admin.delete(f"/admin/accounts/{aid}/members/{member['user_id']}"), 404)

    plan = ok(
        await admin.post(
            "/admin/plans",
            json={
                "name": "pro",
                "price_usd": "20.00",
                "rpm": 60,
                "tpm": 100000,
                "max_concurrency": 5,
                "quota_tokens": 1000000,
                "allowed_models": ["claude-*"],
                "included_credit_usd": "2.50",
            },
        ),
        201,
    )
    assert plan["price_usd"] == "20.00" and plan["included_credit"] == {"nanos": 2_500_000_000, "usd": "2.50"}
    assert ok(await admin.get(f"/admin/plans/{plan['id']}"))["name"] == "pro"
    assert ok(await admin.patch(f"/admin/plans/{plan['id']}", json={"rpm": 120}))["rpm"] == 120
    assert [p["name"] for p in ok(await admin.get("/admin/plans"))["data"]] == ["pro"]
    error(await admin.post("/admin/plans", json={"name": "pro"}), 409, "conflict_error")

    subscribed = ok(await admin.post(f"/admin/accounts/{aid}/subscription", json={"plan": "pro"}), 201)
    grant = subscribed["grant"]
    assert grant["kind"] == "grant" and subscribed["subscription"]["in_period"] is True
    assert credits.calls == [(aid, 2_500_000_000, grant["id"])]
    detail = ok(await admin.get(f"/admin/accounts/{aid}"))
    assert detail["plan"]["name"] == "pro" and detail["subscription"]["status"] == "active"

    topped = ok(
        await admin.post(f"/admin/accounts/{aid}/credit", json={"usd": "10", "reference": "inv-1"}), 201
    )
    assert topped["balance"] == {"nanos": 12_500_000_000, "usd": "12.50"}
    assert credits.calls[-1] == (aid, 10 * USD, topped["entry"]["id"])
    adjusted = ok(
        await admin.post(f"/admin/accounts/{aid}/credit", json={"nanos": -500, "kind": "adjustment"}), 201
    )
    assert adjusted["entry"]["amount"]["nanos"] == -500 and credits.calls[-1][1] == -500
    error(await admin.post(f"/admin/accounts/{aid}/credit", json={"usd": -5}), 400)
    history = ok(await admin.get(f"/admin/accounts/{aid}/credit?limit=2"))["data"]
    assert [e["kind"] for e in history] == ["adjustment", "topup"]

    cancelled = ok(await admin.delete(f"/admin/accounts/{aid}/subscription"))
    assert cancelled["status"] == "cancelled"
    assert [s["status"] for s in ok(await admin.get(f"/admin/accounts/{aid}/subscriptions"))["data"]] == [
        "cancelled"
    ]
    deleted = ok(await admin.delete(f"/admin/plans/{plan['id']}"))
    assert deleted["result"] == "archived"
    error(await admin.delete(f"/admin/accounts/{aid}"), 409)
    ok(await admin.delete(f"/admin/accounts/{aid}?force=true"))
    error(await admin.get(f"/admin/accounts/{aid}"), 404, "not_found_error")


async def test_admin_keys_prices_codes_usage(db: Database, admin: httpx.AsyncClient) -> None:
    aid = ok(await admin.post("/admin/accounts", json={"name": "Acme"}), 201)["id"]
    created = ok(
        await admin.post(
            f"/admin/accounts/{aid}/keys",
            json={"name": "ci", "allowed_models": ["claude-*"], "rpm_limit": 10, "expires_in_days": 7},
        ),
        201,
    )
    raw = created["key"]
    assert raw.startswith("sk-cs-") and created["prefix"] == raw[:14] and created["rpm_limit"] == 10
    async with db.session() as s:
        key_hash = (await s.scalar(select(ApiKey.key_hash).where(ApiKey.id == created["id"]))) or ""
    listed = await admin.get(f"/admin/accounts/{aid}/keys")
    everything = await admin.get("/admin/keys")
    single = await admin.get(f"/admin/keys/{created['id']}")
    for response in (listed, everything, single):
        assert key_hash not in response.text and raw not in response.text and "key_hash" not in response.text
    patched = ok(await admin.patch(f"/admin/keys/{created['id']}", json={"name": "ci-2", "tpm_limit": 5000}))
    assert (patched["name"], patched["tpm_limit"]) == ("ci-2", 5000)
    assert ok(await admin.delete(f"/admin/keys/{created['id']}"))["status"] == "revoked"

    price = ok(await admin.put("/admin/prices/claude-*", json={"input": 3, "output": 15}), 201)
    assert (price["cache_write_per_mtok"], price["cache_read_per_mtok"]) == ("3.750000", "0.300000")
    ok(await admin.put("/admin/prices/claude-*", json={"input": "3", "output": "15", "cache_read": "0.25"}))
    ok(await admin.put("/admin/prices/acme/llama-3", json={"input": "0.1", "output": "0.2"}), 201)
    assert ok(await admin.get("/admin/prices/acme/llama-3"))["model"] == "acme/llama-3"
    assert [p["model"] for p in ok(await admin.get("/admin/prices"))["data"]] == ["acme/llama-3", "claude-*"]
    ok(await admin.delete("/admin/prices/acme/llama-3"))
    error(await admin.get("/admin/prices/acme/llama-3"), 404)

    made = ok(await admin.post("/admin/codes", json={"count": 2, "credit_usd": 5, "max_uses": 3}), 201)[
        "data"
    ]
    assert len(made) == 2 and all(c["code"].startswith("CS-") for c in made)
    codes_page = await admin.get("/admin/codes")
    assert all(c["code"] not in codes_page.text for c in made) and "code_hash" not in codes_page.text
    assert [c["uses"] for c in codes_page.json()["data"]] == [0, 0]
    ok(await admin.delete(f"/admin/codes/{made[0]['id']}"))
    assert len(ok(await admin.get("/admin/codes"))["data"]) == 1

    day = datetime(2026, 6, 1, 12, tzinfo=UTC)
    for n in range(3):
        await add_usage(
            db, aid, created["id"], n, day + timedelta(days=n), model="claude-a" if n else "claude-b"
        )
    usage = ok(await admin.get(f"/admin/usage?account_id={aid}&group_by=day&from=2026-06-02&to=2026-06-03"))
    assert [(r["day"], r["requests"]) for r in usage["data"]] == [("2026-06-02", 1), ("2026-06-03", 1)]
    assert usage["total"]["cost_nanos"] == 1_200_000 and usage["total"]["cost_usd"] == "0.0012"
    by_model = ok(await admin.get("/admin/usage?group_by=model"))["data"]
    assert [(r["model"], r["requests"]) for r in by_model] == [("claude-a", 2), ("claude-b", 1)]
    by_key = ok(await admin.get(f"/admin/usage?group_by=key&key_id={created['id']}"))["data"]
    assert by_key[0]["key_id"] == created["id"]
    page = ok(await admin.get(f"/admin/usage/requests?account_id={aid}&limit=2"))
    assert page["has_more"] and len(page["data"]) == 2 and page["data"][0]["upstream"] == "anthropic-prod"
    rest = ok(await admin.get(f"/admin/usage/requests?account_id={aid}&before_id={page['next_before_id']}"))
    assert len(rest["data"]) == 1 and not rest["has_more"]


async def test_admin_validation(admin: httpx.AsyncClient) -> None:
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/admin/plans", {"name": "x", "rpm": "fast"}, "rpm"),
        ("POST", "/admin/plans", {"name": "x", "allowed_models": "claude-*"}, "allowed_models"),
        ("POST", "/admin/plans", {"name": 7}, "name"),
        ("POST", "/admin/plans", {"name": "x", "colour": "red"}, "colour"),
        ("POST", "/admin/accounts", {"name": "x", "email": 5}, "email"),
        ("POST", "/admin/accounts", {}, "name"),
        ("PUT", "/admin/prices/m", {"input": "three", "output": 1}, "input"),
        ("POST", "/admin/codes", {"credit_usd": 1, "max_uses": "many"}, "max_uses"),
    ]
    for method, path, body, field in cases:
        message = error(await admin.request(method, path, json=body), 400, "invalid_request_error")
        assert field in message, (path, body, message)
    aid = ok(await admin.post("/admin/accounts", json={"name": "a"}), 201)["id"]
    for body, field in [
        ({}, "usd"),
        ({"usd": "ten"}, "usd"),
        ({"usd": 1, "nanos": 1}, "nanos"),
        ({"usd": True}, "usd"),
    ]:
        assert field in error(await admin.post(f"/admin/accounts/{aid}/credit", json=body), 400)
    assert "plan" in error(await admin.post(f"/admin/accounts/{aid}/subscription", json={}), 400)
    assert "rpm_limit" in error(await admin.post(f"/admin/accounts/{aid}/keys", json={"rpm_limit": -1}), 400)
    assert "not valid JSON" in error(await admin.post("/admin/accounts", content=b"{nope"), 400)
    assert "JSON object" in error(await admin.post("/admin/accounts", json=["a"]), 400)
    assert "limit" in error(await admin.get("/admin/accounts?limit=abc"), 400)
    assert "group_by" in error(await admin.get("/admin/usage?group_by=week"), 400)
    assert "from" in error(await admin.get("/admin/usage?from=yesterday"), 400)
    error(await admin.get("/admin/accounts/999"), 404)
    error(await admin.post("/admin/accounts/999/subscription", json={"plan": "nope"}), 404)


# -- the customer account API --------------------------------------------------------------------


async def test_account_api(
    db: Database, admin: httpx.AsyncClient, account_api: Any, credits: Credits
) -> None:
    ok(await admin.post("/admin/plans", json={"name": "pro", "quota_tokens": 1000, "rpm": 60}), 201)
    aid, raw, key_id = await customer(admin, "alice", plan="pro")
    await add_usage(db, aid, key_id, 1, datetime.now(UTC))  # after the period started

    async with client(account_api) as anonymous:
        error(await anonymous.get("/v1/account"), 401, "authentication_error")
    async with db.session() as s:
        operator_raw, _ = await create_key(s, "operator")
        await s.commit()
    async with client(account_api, operator_raw) as operator:
        assert "belongs to no account" in error(await operator.get("/v1/account"), 403, "permission_error")

    async with client(account_api, raw) as me:
        overview = ok(await me.get("/v1/account"))
        assert overview["account"]["id"] == aid and overview["balance"] == {"nanos": 0, "usd": "0.00"}
        assert overview["plan"]["name"] == "pro" and overview["plan"]["rpm"] == 60
        assert overview["quota"] == {
            "limit_tokens": 1000,
            "used_tokens": 120,
            "remaining_tokens": 880,
            "period_start": overview["subscription"]["period_start"],
            "period_end": overview["subscription"]["period_end"],
        }
        usage = ok(await me.get("/v1/account/usage?group_by=model"))
        assert usage["data"][0]["model"] == "claude-sonnet-4-6" and usage["total"]["requests"] == 1
        assert "group_by" in error(await me.get("/v1/account/usage?group_by=account"), 400)
        requests = ok(await me.get("/v1/account/requests"))["data"]
        assert len(requests) == 1 and "upstream" not in requests[0] and "upstream_model" not in requests[0]
        assert "anthropic-prod" not in (await me.get("/v1/account/requests")).text

        new_key = ok(await me.post("/v1/account/keys", json={"name": "laptop", "rpm_limit": 5}), 201)
        assert new_key["key"].startswith("sk-cs-") and new_key["account_id"] == aid
        assert [k["name"] for k in ok(await me.get("/v1/account/keys"))["data"]] == ["alice key", "laptop"]
        assert ok(await me.delete(f"/v1/account/keys/{new_key['id']}"))["status"] == "revoked"
        assert "name" in error(await me.post("/v1/account/keys", json={"name": ""}), 400)

        made = ok(await admin.post("/admin/codes", json={"credit_usd": "7.5"}), 201)["data"][0]
        redeemed = ok(await me.post("/v1/account/redeem", json={"code": made["code"].lower()}))
        assert redeemed["credit_added"]["usd"] == "7.50" and redeemed["balance"]["nanos"] == 7_500_000_000
        assert credits.calls[-1][:2] == (aid, 7_500_000_000)
        error(await me.post("/v1/account/redeem", json={"code": made["code"]}), 409, "conflict_error")
        error(await me.post("/v1/account/redeem", json={"code": "CS-nope"}), 404)
        assert "code" in error(await me.post("/v1/account/redeem", json={}), 400)


async def test_account_isolation(db: Database, admin: httpx.AsyncClient, account_api: Any) -> None:
    """Customer A sees nothing of B and cannot touch B's keys; B's ids answer 404."""
    a_id, a_raw, a_key = await customer(admin, "alice")
    b_id, b_raw, b_key = await customer(admin, "bob")
    now = datetime.now(UTC)
    await add_usage(db, a_id, a_key, 1, now)
    for n in range(3):
        await add_usage(db, b_id, b_key, n, now, model="secret-model")

    async with client(account_api, a_raw) as alice:
        assert ok(await alice.get("/v1/account"))["account"]["id"] == a_id
        error(await alice.delete(f"/v1/account/keys/{b_key}"), 404, "not_found_error")
        error(await alice.delete("/v1/account/keys/999999"), 404, "not_found_error")
        keys = ok(await alice.get("/v1/account/keys"))["data"]
        assert [k["id"] for k in keys] == [a_key]
        for group in ("day", "model", "key"):
            body = await alice.get(f"/v1/account/usage?group_by={group}")
            assert "secret-model" not in body.text and ok(body)["total"]["requests"] == 1
            if group == "key":
                assert [r["key_id"] for r in body.json()["data"]] == [a_key]
        rows = ok(await alice.get("/v1/account/requests?limit=100"))["data"]
        assert [r["key_id"] for r in rows] == [a_key]
        b_first = (ok(await admin.get(f"/admin/usage/requests?account_id={b_id}")))["data"][0]["id"]
        paged = ok(await alice.get(f"/v1/account/requests?before_id={b_first + 1}"))["data"]
        assert all(r["key_id"] == a_key for r in paged)
        # Query parameters that would select another account are not part of the API.
        body = ok(await alice.get(f"/v1/account/usage?account_id={b_id}&key_id={b_key}"))
        assert body["total"]["requests"] == 1
    async with client(account_api, b_raw) as bob:
        assert ok(await bob.get("/v1/account/keys"))["data"][0]["id"] == b_key  # still there, not revoked
        assert ok(await bob.get("/v1/account/keys"))["data"][0]["status"] == "active"
