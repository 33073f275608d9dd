"""The admin console (/console) end to end: a real gateway process, driven like a browser with httpx.

Log in with the admin key, then every page renders and every form does what the admin API
does: plans (and the public /plans page), accounts, credit, subscriptions, keys, redeem
codes, prices, upstream health and usage. Customers and anonymous visitors are sent to the
console's log-in page; a form without its CSRF token is refused.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CODE = re.compile(r"CS(?:-[A-Z0-9]{4}){5}")
RAW_KEY = re.compile(r"sk-cs-[A-Za-z0-9_-]{20,}")


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, f"no csrf_token in {page.url}"
    return match.group(1)


def text_of(page: httpx.Response) -> str:
    """The page's text with tags dropped and entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("web-console")
    gateway = start_gateway(tmp, fake_upstream, f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}")
    yield gateway
    stop(gateway.proc)


class Console:
    """A logged-in console session: a cookie jar plus the session's CSRF token."""

    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http = http
        self.token = token

    def get(self, path: str, status: int = 200) -> httpx.Response:
        response = self.http.get(path)
        assert response.status_code == status, (path, response.status_code, text_of(response)[:500])
        return response

    def post(self, path: str, data: dict[str, str], status: int = 303) -> httpx.Response:
        response = self.http.post(path, data={"csrf_token": self.token, **data})
        assert response.status_code == status, (path, response.status_code, text_of(response)[:800])
        return response

    def follow(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code == 303
        return self.get(response.headers["location"])


def login(url: str, key: str) -> tuple[httpx.Client, httpx.Response]:
    http = httpx.Client(base_url=url, timeout=20.0)
    form = http.get("/console/login?next=/console/plans")
    assert form.status_code == 200
    assert "cs_csrf" in http.cookies
    response = http.post(
        "/console/login", data={"csrf_token": csrf_of(form), "admin_key": key, "next": "/console/plans"}
    )
    return http, response


@pytest.fixture(scope="module")
def console(gw: Gateway) -> Iterator[Console]:
    http, response = login(gw.url, ADMIN_KEY)
    assert response.status_code == 303, text_of(response)
    assert response.headers["location"] == "/console/plans"
    assert "cs_session" in http.cookies
    overview = http.get("/console")
    assert overview.status_code == 200
    yield Console(http, csrf_of(overview))
    http.close()


def test_wrong_admin_key_is_401(gw: Gateway) -> None:
    http, response = login(gw.url, "not-the-admin-key")
    try:
        assert response.status_code == 401
        assert "not this server's admin key" in text_of(response)
        assert "cs_session" not in http.cookies
        assert http.get("/console").status_code == 303
    finally:
        http.close()


def test_anonymous_visitors_are_sent_to_the_console_login(gw: Gateway) -> None:
    with httpx.Client(base_url=gw.url) as http:
        for path in ("/console", "/console/accounts", "/console/plans/1", "/console/usage"):
            response = http.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/login?next="), path
        # posting without a session changes nothing and also goes to the log-in page
        response = http.post("/console/plans", data={"name": "Sneaky"})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login")


def test_customers_are_sent_to_the_console_login(gw: Gateway, console: Console) -> None:
    with httpx.Client(base_url=gw.url) as http:
        form = http.get("/signup")
        assert form.status_code == 200
        response = http.post(
            "/signup",
            data={
                "csrf_token": csrf_of(form),
                "email": "customer@example.com",
                "name": "Customer",
                "password": "correct horse battery",
            },
        )
        assert response.status_code == 303, text_of(response)
        assert "cs_session" in http.cookies
        assert http.get("/dashboard").status_code == 200  # a real customer session
        for path in ("/console", "/console/accounts", "/console/codes"):
            response = http.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/login"), path
        dashboard = http.get("/dashboard")
        response = http.post(
            "/console/plans", data={"csrf_token": csrf_of(dashboard), "name": "Customer plan"}
        )
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login")
    assert "Customer plan" not in console.get("/console/plans").text


def test_a_form_without_a_valid_csrf_token_is_refused(console: Console) -> None:
    response = console.http.post("/console/plans", data={"name": "No token"})
    assert response.status_code == 403
    assert "CSRF" in text_of(response)
    response = console.http.post("/console/plans", data={"name": "Bad token", "csrf_token": "x" * 32})
    assert response.status_code == 403
    response = console.http.post(
        "/console/plans",
        data={"name": "Cross site", "csrf_token": console.token},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "No token" not in console.get("/console/plans").text


def test_overview_and_every_page_render(console: Console) -> None:
    overview = text_of(console.get("/console"))
    for heading in ("Accounts", "Plans", "Active subscriptions", "Upstreams", "Today (UTC)", "Last 7 days"):
        assert heading in overview
    for path in (
        "/console/accounts",
        "/console/plans",
        "/console/prices",
        "/console/codes",
        "/console/upstreams",
        "/console/usage",
        "/console/usage?days=7",
        "/console/usage?days=90",
    ):
        page = console.get(path)
        assert 'aria-label="Console"' in page.text
        assert page.headers["cache-control"] == "no-store"
    assert console.get("/console/accounts/999999", status=404)
    assert console.get("/console/plans/99999999999", status=404)


def plan_form(name: str, **changes: str) -> dict[str, str]:
    form = {
        "name": name,
        "description": "For <b>teams</b> & friends",
        "price_usd": "19.99",
        "period": "month",
        "rpm": "60",
        "tpm": "100,000",
        "max_concurrency": "4",
        "quota_tokens": "5000000",
        "included_credit_usd": "5",
        "allowed_models": "claude-*, gpt-test",
        "price_multiplier": "1",
        "public": "on",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def test_a_plan_created_in_the_console_is_on_the_public_plans_page(gw: Gateway, console: Console) -> None:
    created = console.post("/console/plans", plan_form("Team Console"))
    assert created.headers["location"].startswith("/console/plans?done=plan-created#plan-")
    listing = console.follow(created)
    assert "Plan created" in text_of(listing)
    assert "Team Console" in listing.text
    console.post("/console/plans", plan_form("Hidden Console", public=None, trial="on", price_usd="0"))

    with httpx.Client(base_url=gw.url) as anonymous:
        public = anonymous.get("/plans")
        assert public.status_code == 200
        text = text_of(public)
        assert "Team Console" in text
        assert "$19.99 / month" in text
        assert "For <b>teams</b> & friends" in text  # escaped in the HTML, shown as typed
        assert "<b>teams</b>" not in public.text
        assert "Hidden Console" not in text  # private plans are not offered

    # the console lists private plans too
    plans = text_of(console.get("/console/plans"))
    assert "Hidden Console" in plans and "private" in plans


def test_plan_errors_keep_what_was_typed(console: Console) -> None:
    page = console.post("/console/plans", plan_form("Broken plan", rpm="lots"), status=400)
    text = text_of(page)
    assert "rpm: expected a whole number" in text
    assert 'value="Broken plan"' in page.text and 'value="lots"' in page.text
    assert 'aria-invalid="true"' in page.text
    console.post("/console/plans", plan_form("Twice"))
    page = console.post("/console/plans", plan_form("Twice"), status=409)
    assert "A plan named 'Twice' already exists" in text_of(page)
    page = console.post("/console/plans", plan_form("Negative", max_concurrency="0"), status=400)
    assert "max_concurrency: must be between 1" in text_of(page)
    # a decimal comma is refused, never read as a thousands separator
    page = console.post("/console/plans", plan_form("Comma", included_credit_usd="1,5"), status=400)
    assert "included_credit_usd: '1,5' is not a number" in text_of(page)


def plan_id(console: Console, name: str) -> int:
    match = re.search(
        rf'id="plan-(\d+)">\s*<td><a href="/console/plans/\d+">{re.escape(name)}</a>',
        console.get("/console/plans").text,
    )
    assert match, f"plan {name} not listed"
    return int(match.group(1))


def test_edit_archive_restore_and_delete_a_plan(gw: Gateway, console: Console) -> None:
    console.post("/console/plans", plan_form("Editable", price_usd="5"))
    ident = plan_id(console, "Editable")
    edit = console.get(f"/console/plans/{ident}")
    assert 'value="Editable"' in edit.text and 'value="claude-*, gpt-test"' in edit.text
    saved = console.post(f"/console/plans/{ident}", plan_form("Editable Pro", rpm="", price_usd="7.50"))
    page = text_of(console.follow(saved))
    assert "Plan saved" in page and "Editable Pro" in page and "$7.50" in page
    assert 'id="edit-rpm" name="rpm" type="text" value=""' in console.get(f"/console/plans/{ident}").text

    console.post(f"/console/plans/{ident}/archive", {"archived": "true"})
    with httpx.Client(base_url=gw.url) as anonymous:
        assert "Editable Pro" not in anonymous.get("/plans").text
    assert "archived" in text_of(console.get(f"/console/plans/{ident}"))
    console.post(f"/console/plans/{ident}/archive", {"archived": "false"})
    with httpx.Client(base_url=gw.url) as anonymous:
        assert "Editable Pro" in anonymous.get("/plans").text

    deleted = console.post(f"/console/plans/{ident}/delete", {})
    assert deleted.headers["location"] == "/console/plans?done=plan-deleted"
    console.get(f"/console/plans/{ident}", status=404)


def overview_counts(console: Console) -> dict[str, int]:
    """The overview's account, disabled and active-subscription counts."""
    page = console.get("/console").text
    found = {
        name: re.search(pattern, page)
        for name, pattern in (
            ("accounts", r'id="count-accounts">([\d,]+)<'),
            ("disabled", r"([\d,]+) disabled"),
            ("subscriptions", r'id="count-subscriptions">([\d,]+)<'),
        )
    }
    assert all(found.values()), found
    assert "Counted over the first" not in page  # every account is counted
    return {name: int(match.group(1).replace(",", "")) for name, match in found.items() if match}


def account_id(response: httpx.Response) -> int:
    match = re.match(r"/console/accounts/(\d+)\?done=account-created$", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def test_create_an_account_top_it_up_and_subscribe_it(gw: Gateway, console: Console) -> None:
    console.post("/console/plans", plan_form("Account Plan", included_credit_usd="2"))
    before = overview_counts(console)
    created = console.post(
        "/console/accounts",
        {"name": "Acme <script>x</script>", "email": "Billing@Acme.example", "kind": "organisation"},
    )
    ident = account_id(created)
    detail = console.follow(created)
    assert "Account created" in text_of(detail)
    assert "<script>x</script>" not in detail.text and "Acme &lt;script&gt;x&lt;/script&gt;" in detail.text

    page = console.follow(
        console.post(f"/console/accounts/{ident}/credit", {"usd": "12.50", "reference": "INV-1"})
    )
    assert re.search(r'id="balance">\$12\.50<', page.text)
    assert "INV-1" in page.text

    bad = console.post(f"/console/accounts/{ident}/credit", {"usd": "-3"}, status=400)
    assert "usd: must be between 0" in text_of(bad)
    assert 'value="-3"' in bad.text
    page = console.follow(
        console.post(f"/console/accounts/{ident}/credit", {"usd": "-0.50", "kind": "adjustment"})
    )
    assert re.search(r'id="balance">\$12\.00<', page.text)

    plan = plan_id(console, "Account Plan")
    page = console.follow(console.post(f"/console/accounts/{ident}/subscribe", {"plan": str(plan)}))
    assert "on the new plan" in text_of(page)
    assert re.search(r'id="current-plan"><a href="/console/plans/\d+">Account Plan</a>', page.text)
    assert re.search(r'id="balance">\$14\.00<', page.text)  # the plan's included credit
    after = overview_counts(console)
    assert (after["accounts"], after["subscriptions"]) == (
        before["accounts"] + 1,
        before["subscriptions"] + 1,
    )

    listing = console.get("/console/accounts")
    row = re.search(rf'<tr id="account-{ident}">(.*?)</tr>', listing.text, re.S)
    assert row
    assert (
        "Account Plan" in row.group(1) and "$14.00" in row.group(1) and "billing@acme.example" in row.group(1)
    )

    page = console.post(
        f"/console/accounts/{ident}/members", {"email": "not-an-email", "role": "owner"}, status=400
    )
    assert "is not an email address" in text_of(page)
    page = console.follow(
        console.post(f"/console/accounts/{ident}/members", {"email": "boss@acme.example", "role": "owner"})
    )
    assert "boss@acme.example" in page.text

    page = console.post(f"/console/accounts/{ident}/keys", {"name": "server"}, status=200)
    raw = RAW_KEY.search(page.text)
    assert raw and "shown only once" in page.text
    again = console.get(f"/console/accounts/{ident}")
    assert raw.group(0) not in again.text and raw.group(0)[:12] in again.text

    # the key works against the API: the account is on a plan that allows claude-*
    response = httpx.post(
        f"{gw.url}/v1/messages",
        headers={"x-api-key": raw.group(0), "anthropic-version": "2023-06-01"},
        json={"model": "claude-test", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert response.status_code == 200, response.text

    page = console.follow(console.post(f"/console/accounts/{ident}/status", {"disabled": "true"}))
    assert "The account is disabled" in text_of(page)
    refused = console.post(f"/console/accounts/{ident}/subscribe", {"plan": str(plan)}, status=400)
    assert "is disabled; enable it" in text_of(refused)
    assert overview_counts(console)["disabled"] == after["disabled"] + 1
    page = console.follow(console.post(f"/console/accounts/{ident}/status", {"disabled": "false"}))
    assert "enabled again" in text_of(page)

    # usage across accounts names the account
    deadline = time.monotonic() + 10
    while True:
        usage = console.get("/console/usage?days=7")
        if "Acme &lt;script&gt;" in usage.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "Acme &lt;script&gt;x&lt;/script&gt;" in usage.text
    assert "claude-test" in usage.text
    assert re.search(r'id="total-requests">[1-9]', usage.text)


def test_account_form_errors(console: Console) -> None:
    page = console.post("/console/accounts", {"name": "  ", "email": "", "kind": "person"}, status=400)
    assert "name: must not be empty" in text_of(page)
    page = console.post("/console/accounts", {"name": "Bad kind", "kind": "robot"}, status=400)
    assert "kind: must be one of person, organisation" in text_of(page)
    assert 'value="Bad kind"' in page.text


def test_codes_are_shown_once(console: Console) -> None:
    console.post("/console/plans", plan_form("Code Plan"))
    plan = plan_id(console, "Code Plan")
    page = console.post(
        "/console/codes",
        {"count": "3", "credit_usd": "5", "plan": str(plan), "max_uses": "2", "expires_in_days": "30"},
        status=200,
    )
    made = set(CODE.findall(page.text))
    assert len(made) == 3
    assert "shown only once" in page.text
    listing = console.get("/console/codes")
    assert not CODE.search(listing.text)  # only prefixes from now on
    text = text_of(listing)
    for code in made:
        assert code[:7] + "…" in text
    assert "Code Plan" in text and "0 / 2" in text

    page = console.post("/console/codes", {"count": "1", "credit_usd": ""}, status=400)
    assert "A code needs credit" in text_of(page)
    page = console.post("/console/codes", {"count": "5000", "credit_usd": "1"}, status=400)
    assert "count: must be between 1 and 1000" in text_of(page)


def test_set_edit_and_delete_a_price(console: Console) -> None:
    page = console.follow(
        console.post("/console/prices", {"model": "claude-*", "input": "3", "output": "15"})
    )
    assert "Price saved" in text_of(page)
    table = page.text.split('<table id="prices">', 1)[1]
    row = re.search(r"<code>claude-\*</code>(.*?)</tr>", table, re.S)
    assert row
    cells = text_of(httpx.Response(200, text=row.group(1)))
    assert "$3.00 $15.00 $3.75 $0.30" in cells  # cache prices follow the input price
    edit = console.get("/console/prices?model=claude-*")
    assert 'value="3"' in edit.text and 'value="15"' in edit.text
    bad = console.post("/console/prices", {"model": "claude-test", "input": "abc", "output": "1"}, status=400)
    assert "input: 'abc' is not a number" in text_of(bad)
    console.follow(
        console.post(
            "/console/prices", {"model": "claude-test", "input": "0.8", "output": "4", "cache_read": "0.075"}
        )
    )
    page = console.follow(console.post("/console/prices/delete", {"model": "claude-*"}))
    assert "Price deleted" in text_of(page)
    table = page.text.split('<table id="prices">', 1)[1]
    assert "<code>claude-*</code>" not in table
    assert "$0.075" in table and "$1.00" in table  # every digit; cache write 1.25 x 0.8
    page = console.post("/console/prices/delete", {"model": "claude-*"}, status=404)
    assert "No price for model" in text_of(page)


def test_upstreams_lists_the_deployments(console: Console) -> None:
    page = console.get("/console/upstreams")
    text = text_of(page)
    for model in ("claude-test", "claude-budget", "claude-via-openai", "gpt-test"):
        assert model in text
    assert "fake-anthropic/fake-claude" in text and "fake-openai/fake-gpt" in text
    assert "healthy" in text
    assert "All 4 deployments are healthy" in text_of(console.get("/console"))
