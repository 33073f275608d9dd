"""The web store's accounts, sessions and forms over real HTTP (httpx against a gateway process).

Sign-up rules, log-in and its throttle, CSRF and same-origin checks, cookie flags, log-out
ending the session server-side, open redirects, plan choice (free, trial once, paid from the
balance, private plans), redeem codes, one customer's key ids against another's, and the
security headers on every page. The browser walks are in test_web_store.py.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.support.databases import postgres_database
from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

PASSWORD = "a perfectly long password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    tmp = tmp_path_factory.mktemp(f"web-auth-{request.param}")
    web = {"seed_free_plan": True, "login_attempts": 5, "login_window_seconds": 60}
    if request.param == "sqlite":
        gw = start_gateway(tmp, fake_upstream, f"sqlite:///{tmp / 'web.db'}", name="web-auth", web=web)
        yield gw
        stop(gw.proc)
        return
    async with postgres_database() as url:
        gw = start_gateway(tmp, fake_upstream, url, name="web-auth", web=web)
        yield gw
        stop(gw.proc)


def query(store: Gateway, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows straight from the gateway's database (SQLite file or PostgreSQL)."""
    if store.database_url.startswith("sqlite"):
        db = sqlite3.connect(store.database_url.split(":///", 1)[1])
        try:
            return db.execute(sql.replace("$1", "?"), args).fetchall()
        finally:
            db.close()

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(store.database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def token(html: str) -> str:
    match = CSRF.search(html)
    assert match, html[:500]
    return match.group(1)


def browser(store: Gateway) -> httpx.Client:
    return httpx.Client(base_url=store.url, follow_redirects=False, timeout=30)


def sign_up(store: Gateway, email: str | None = None, **extra: str) -> tuple[httpx.Client, str]:
    client = browser(store)
    email = email or f"user-{time.time_ns()}@example.com"
    form = client.get("/signup")
    resp = client.post(
        "/signup", data={"csrf_token": token(form.text), "email": email, "password": PASSWORD, **extra}
    )
    assert resp.status_code == 303, resp.text[:2000]
    return client, email


def post_form(client: httpx.Client, page: str, action: str, **data: str) -> httpx.Response:
    html = client.get(page).text
    return client.post(action, data={"csrf_token": token(html), **data})


def create_key(client: httpx.Client, name: str = "k") -> tuple[str, int]:
    resp = post_form(client, "/dashboard/keys", "/dashboard/keys", name=name)
    assert resp.status_code == 200, resp.text[:1000]
    raw = re.search(r"sk-cs-[A-Za-z0-9_-]{20,}", resp.text)
    ids = re.findall(r'action="/dashboard/keys/(\d+)/revoke"', resp.text)
    assert raw and ids
    return raw.group(0), int(ids[-1])


def admin_plan(store: Gateway, **fields: object) -> int:
    resp = httpx.post(f"{store.url}/admin/plans", json=fields, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


# -- sign-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "password", "status", "message"),
    [
        ("not-an-address", PASSWORD, 400, "is not an email address"),
        ("short@example.com", "short", 400, "at least 10 characters"),
        ("same@example.com", "same@example.com", 400, "must not be your e-mail"),
        ("huge@example.com", "x" * 300, 400, "at most 256"),
    ],
)
def test_signup_rejects_bad_input_with_a_message(
    store: Gateway, email: str, password: str, status: int, message: str
) -> None:
    client = browser(store)
    form = client.get("/signup")
    resp = client.post("/signup", data={"csrf_token": token(form.text), "email": email, "password": password})
    assert resp.status_code == status
    assert message in resp.text
    assert "cs_session" not in resp.cookies
    assert 'value="' + (email if email != "not-an-address" else "not-an-address") + '"' in resp.text  # kept


def test_signup_twice_is_a_conflict_and_passwords_are_argon2id(store: Gateway) -> None:
    _, email = sign_up(store)
    client = browser(store)
    form = client.get("/signup")
    resp = client.post("/signup", data={"csrf_token": token(form.text), "email": email.upper(), "password": PASSWORD})
    assert resp.status_code == 409 and "log in instead" in resp.text
    ((stored,),) = query(store, "SELECT password_hash FROM users WHERE email = $1", email)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    tokens = [row[0] for row in query(store, "SELECT token_hash FROM web_sessions")]
    assert tokens and all(len(t) == 64 for t in tokens)


def test_session_cookie_flags_and_logout_ends_the_session(store: Gateway) -> None:
    client, _ = sign_up(store)
    cookie = next(c for c in client.cookies.jar if c.name == "cs_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "lax"
    assert cookie.path == "/" and not cookie.secure  # plain http here
    stolen = cookie.value
    assert client.get("/dashboard").status_code == 200
    resp = post_form(client, "/dashboard", "/logout")
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    replay = browser(store)
    replay.cookies.set("cs_session", stolen)
    resp = replay.get("/dashboard")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")


def test_secure_cookie_behind_an_https_proxy(store: Gateway) -> None:
    client = browser(store)
    form = client.get("/signup")
    resp = client.post(
        "/signup",
        headers={"x-forwarded-proto": "https"},
        data={"csrf_token": token(form.text), "email": f"tls-{time.time_ns()}@example.com", "password": PASSWORD},
    )
    assert resp.status_code == 303
    assert "secure" in resp.headers["set-cookie"].lower()


# -- CSRF and origin -------------------------------------------------------------------------


def test_forms_need_the_csrf_token_and_the_same_origin(store: Gateway) -> None:
    client = browser(store)
    html = client.get("/signup").text
    data = {"email": f"csrf-{time.time_ns()}@example.com", "password": PASSWORD}
    assert client.post("/signup", data=data).status_code == 403
    assert client.post("/signup", data={**data, "csrf_token": "forged-token-forged-token"}).status_code == 403
    stranger = browser(store)  # a token without its cookie (another browser) is worthless
    assert stranger.post("/signup", data={**data, "csrf_token": token(html)}).status_code == 403
    cross = client.post(
        "/signup", data={**data, "csrf_token": token(html)}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "another site" in cross.text

    customer, _ = sign_up(store)
    key_page = customer.get("/dashboard/keys").text
    assert customer.post("/dashboard/keys", data={"name": "x"}).status_code == 403
    # the anonymous double-submit token is not the session's token
    assert customer.post("/dashboard/keys", data={"name": "x", "csrf_token": token(html)}).status_code == 403
    assert customer.post("/dashboard/keys", data={"name": "x", "csrf_token": token(key_page)}).status_code == 200


def test_oversized_form_is_refused(store: Gateway) -> None:
    client = browser(store)
    html = client.get("/signup").text
    resp = client.post("/signup", data={"csrf_token": token(html), "email": "a@b.co", "name": "x" * 70_000})
    assert resp.status_code == 413


# -- log-in ----------------------------------------------------------------------------------


def test_login_and_open_redirects(store: Gateway) -> None:
    _, email = sign_up(store)
    for target, expected in (("/dashboard/usage", "/dashboard/usage"), ("//evil.example/x", "/dashboard"),
                             ("https://evil.example", "/dashboard"), ("/\\evil.example", "/dashboard")):
        client = browser(store)
        resp = post_form(client, "/login", "/login", email=email, password=PASSWORD, next=target)
        assert resp.status_code == 303 and resp.headers["location"] == expected, (target, resp.headers)


def test_failed_logins_are_throttled_per_address_and_email(store: Gateway) -> None:
    _, email = sign_up(store)
    client = browser(store)
    statuses = [
        post_form(client, "/login", "/login", email=email, password="wrong password!").status_code
        for _ in range(7)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429], statuses
    resp = post_form(client, "/login", "/login", email=email, password=PASSWORD)
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) > 0
    assert "Too many failed log-ins" in resp.text
    # unknown e-mail addresses answer exactly like wrong passwords
    other = browser(store)
    resp = post_form(other, "/login", "/login", email="nobody@example.com", password="whatever it is")
    assert resp.status_code == 429  # same address: still throttled


def test_console_login_needs_the_admin_key(store: Gateway) -> None:
    client = browser(store)
    resp = post_form(client, "/console/login", "/console/login", admin_key="nope")
    assert resp.status_code in (401, 429)
    customer, _ = sign_up(store)
    resp = customer.get("/console")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login")


# -- plans, keys, codes ----------------------------------------------------------------------


def test_plan_choices(store: Gateway) -> None:
    trial = admin_plan(store, name=f"Trial {time.time_ns()}", trial=True, price_usd="0")
    paid = admin_plan(store, name=f"Pro {time.time_ns()}", price_usd="5", included_credit_usd="1")
    private = admin_plan(store, name=f"Secret {time.time_ns()}", public=False)
    client, _ = sign_up(store)
    assert f'id="plan-{private}"' not in client.get("/dashboard/plans").text
    assert post_form(client, "/dashboard/plans", f"/dashboard/plans/{private}").status_code == 404
    resp = post_form(client, "/dashboard/plans", f"/dashboard/plans/{paid}")
    assert resp.status_code == 402 and "Top up or redeem a code" in resp.text
    assert post_form(client, "/dashboard/plans", f"/dashboard/plans/{trial}").status_code == 303
    assert "Your current plan" in client.get("/dashboard/plans").text
    again = post_form(client, "/dashboard/plans", f"/dashboard/plans/{trial}")
    assert again.status_code == 409 and "once per account" in again.text

    # a code worth $10 pays for the $5 plan; the $1 it includes is granted on top
    codes = httpx.post(f"{store.url}/admin/codes", json={"credit_usd": "10"}, headers=ADMIN).json()
    code = codes["data"][0]["code"]
    resp = post_form(client, "/dashboard", "/dashboard/redeem", code=code)
    assert resp.status_code == 200 and "$10.00" in resp.text
    assert post_form(client, "/dashboard/plans", f"/dashboard/plans/{paid}").status_code == 303
    assert "$6.00" in client.get("/dashboard").text
    bad = post_form(client, "/dashboard", "/dashboard/redeem", code=code)
    assert bad.status_code >= 400 and 'role="alert"' in bad.text


def test_a_customer_cannot_touch_another_customers_keys(store: Gateway) -> None:
    alice, _ = sign_up(store, plan_id="1")
    bob, _ = sign_up(store, plan_id="1")
    alice_key, alice_id = create_key(alice, "alice-key")
    resp = post_form(bob, "/dashboard/keys", f"/dashboard/keys/{alice_id}/revoke")
    assert resp.status_code == 404
    assert "alice-key" not in bob.get("/dashboard/keys").text
    for huge in ("99999999999", "2147483648"):
        assert post_form(bob, "/dashboard/keys", f"/dashboard/keys/{huge}/revoke").status_code == 404
    ok = httpx.post(
        f"{store.url}/v1/messages",
        headers={"x-api-key": alice_key, "anthropic-version": "2023-06-01"},
        json={"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert ok.status_code == 200, ok.text
    assert "claude-test" not in bob.get("/dashboard/usage").text  # Bob's usage shows none of Alice's


def test_security_headers_on_every_page(store: Gateway) -> None:
    client, _ = sign_up(store)
    for path in ("/", "/plans", "/login", "/signup", "/dashboard", "/dashboard/keys", "/dashboard/usage",
                 "/dashboard/plans", "/console/login", "/dashboard/no-such-page"):
        resp = client.get(path)
        headers = resp.headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
        assert headers["cache-control"] == "no-store", path
        assert "access-control-allow-origin" not in headers, path
        assert "<script>" not in resp.text and "https://" not in re.sub(r"<pre.*?</pre>", "", resp.text, flags=re.S)
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_user_input_is_escaped(store: Gateway) -> None:
    client, _ = sign_up(store, name="<script>alert(1)</script>")
    html = client.get("/dashboard").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_static_files_stay_inside_the_package(store: Gateway) -> None:
    for path in ("/static/../web/app.py", "/static/%2e%2e/%2e%2e/config.py", "/static/..%2fapp.py"):
        assert httpx.get(store.url + path).status_code == 404, path


def test_screenshot_folder_is_git_ignored() -> None:
    ignore = (Path(__file__).resolve().parent.parent / ".gitignore").read_text()
    assert "test-artifacts/" in ignore.split()
