"""Property-based fuzzing of the web store's pages and forms over HTTP (hypothesis).

Random paths and query strings under every web prefix, random cookies, and random form
bodies (unknown and repeated fields, NUL and lone-surrogate escapes, RTL marks, huge values,
wrong content types) posted to every form, both anonymously and inside a logged-in customer
and console session with a valid CSRF token. For every request: no 5xx, an HTML page (or a
redirect) carrying the security headers, and the gateway still alive.

Examples per test: ``CLAUDESTORE_FUZZ_WEB_EXAMPLES`` (default 40: a few hundred requests in all
in CI, derandomized); ``scripts/fuzz_long.py`` style long runs set it higher.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

EXAMPLES = int(os.environ.get("CLAUDESTORE_FUZZ_WEB_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=EXAMPLES <= 100,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
FORM = {"content-type": "application/x-www-form-urlencoded"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GET_PATHS = [
    "/",
    "/plans",
    "/docs",
    "/docs/quickstart",
    "/docs/errors",
    "/signup",
    "/login",
    "/console/login",
    "/dashboard",
    "/dashboard/plans",
    "/dashboard/keys",
    "/dashboard/usage",
    "/console",
    "/console/accounts",
    "/console/accounts/1",
    "/console/plans",
    "/console/plans/1",
    "/console/prices",
    "/console/codes",
    "/console/upstreams",
    "/console/usage",
    "/static/app.css",
]
CUSTOMER_FORMS = [
    "/dashboard/keys",
    "/dashboard/redeem",
    "/dashboard/plans/1",
    "/dashboard/keys/1/revoke",
    "/logout",
]
CONSOLE_FORMS = [
    "/console/accounts",
    "/console/accounts/1",
    "/console/accounts/1/credit",
    "/console/accounts/1/subscribe",
    "/console/accounts/1/status",
    "/console/accounts/1/members",
    "/console/accounts/1/keys",
    "/console/plans",
    "/console/plans/1",
    "/console/plans/1/archive",
    "/console/prices",
    "/console/codes",
]
ANONYMOUS_FORMS = ["/signup", "/login", "/console/login", "/logout"]
FIELDS = [
    "email",
    "password",
    "name",
    "plan_id",
    "next",
    "code",
    "admin_key",
    "usd",
    "kind",
    "plan",
    "price_usd",
    "period",
    "rpm",
    "tpm",
    "max_concurrency",
    "quota_tokens",
    "included_credit_usd",
    "allowed_models",
    "trial",
    "public",
    "model",
    "input_per_mtok",
    "output_per_mtok",
    "count",
    "credit_usd",
    "max_uses",
    "expires_in_days",
    "role",
    "disabled",
    "description",
    "price_multiplier",
    "reference",
]

nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\\ud800",
            "\u202e\u200f",
            "\ufeff",
            "-1",
            "0",
            "1e309",
            "NaN",
            "99999999999999999999",
            "1,5",
            "12.345",
            "<script>alert(1)</script>",
            "' OR 1=1 --",
            "../../etc/passwd",
            "//evil.example",
            "a@b.co",
            "x" * 5000,
            "*",
            "claude-*",
            "true",
            "on",
            "month",
            "2026-13-45",
        ]
    ),
)
form_body = st.lists(
    st.tuples(st.one_of(st.sampled_from(FIELDS), st.text(max_size=12)), nasty_text), max_size=12
)


@dataclass
class Web:
    gw: Gateway
    customer: dict[str, str]  # cookies of a logged-in customer
    customer_csrf: str
    console: dict[str, str]
    console_csrf: str


def _login(base: str, page: str, action: str, data: dict[str, str]) -> tuple[dict[str, str], str]:
    with httpx.Client(base_url=base, timeout=30) as client:
        form = client.get(page)
        token = CSRF.search(form.text)
        assert token, form.text[:300]
        resp = client.post(action, data={"csrf_token": token.group(1), **data})
        assert resp.status_code == 303, resp.text[:500]
        landing = client.get(resp.headers["location"])
        session_token = CSRF.search(landing.text)
        assert session_token, landing.text[:300]
        return dict(client.cookies), session_token.group(1)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream) -> Iterator[Web]:
    tmp = tmp_path_factory.mktemp("fuzz-web")
    gw = start_gateway(
        tmp,
        fake_upstream,
        f"sqlite:///{tmp / 'web.db'}",
        name="fuzz-web",
        web={"seed_free_plan": True, "login_attempts": 1_000_000},
    )
    customer, customer_csrf = _login(
        gw.url,
        "/signup",
        "/signup",
        {"email": f"fuzz-{time.time_ns()}@example.com", "password": "fuzzing password 1", "plan_id": "1"},
    )
    console, console_csrf = _login(gw.url, "/console/login", "/console/login", {"admin_key": ADMIN_KEY})
    yield Web(gw, customer, customer_csrf, console, console_csrf)
    stop(gw.proc)


def _check(web: Web, resp: httpx.Response) -> None:
    assert web.gw.proc.poll() is None, "the gateway died"
    assert resp.status_code < 500, (
        resp.request.method,
        str(resp.request.url),
        resp.status_code,
        resp.text[:800],
    )
    if resp.status_code in (301, 302, 303, 307):
        location = resp.headers["location"]
        assert location.startswith("/") and not location.startswith("//"), location
    assert "default-src 'self'" in resp.headers.get("content-security-policy", ""), str(resp.request.url)


@FUZZ
@given(
    path=st.sampled_from(GET_PATHS),
    query=st.dictionaries(
        st.sampled_from(["days", "next", "plan", "done", "page", "x"]), nasty_text, max_size=3
    ),
    cookies=st.dictionaries(
        st.sampled_from(["cs_session", "cs_csrf", "other"]),
        st.text(
            alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=';,"\\'),
            max_size=120,
        ),
        max_size=2,
    ),
)
def test_pages_with_random_queries_and_cookies(
    web: Web, path: str, query: dict[str, str], cookies: dict[str, str]
) -> None:
    with httpx.Client(base_url=web.gw.url, timeout=30, cookies=cookies) as client:
        _check(web, client.get(path, params=query))


@FUZZ
@given(action=st.sampled_from(ANONYMOUS_FORMS), body=form_body, with_token=st.booleans())
def test_anonymous_forms(web: Web, action: str, body: list[tuple[str, str]], with_token: bool) -> None:
    with httpx.Client(base_url=web.gw.url, timeout=30) as client:
        page = client.get("/login")
        token = CSRF.search(page.text)
        fields = [("csrf_token", token.group(1))] if with_token and token else []
        _check(web, client.post(action, content=urlencode([*fields, *body]), headers=FORM))


@FUZZ
@given(
    action=st.sampled_from(CUSTOMER_FORMS + CONSOLE_FORMS),
    body=form_body,
    console=st.booleans(),
    encoding=st.sampled_from(["form", "multipart", "json", "garbage"]),
)
def test_session_forms(
    web: Web, action: str, body: list[tuple[str, str]], console: bool, encoding: str
) -> None:
    cookies, token = (web.console, web.console_csrf) if console else (web.customer, web.customer_csrf)
    if action == "/logout":
        return  # would end the shared session
    fields = [("csrf_token", token), *body]
    with httpx.Client(base_url=web.gw.url, timeout=30, cookies=cookies) as client:
        if encoding == "form":
            resp = client.post(action, content=urlencode(fields), headers=FORM)
        elif encoding == "multipart":
            resp = client.post(action, data=dict(fields), files={"upload": ("a.txt", b"x" * 10)})
        elif encoding == "json":
            resp = client.post(action, json=dict(fields))
        else:
            resp = client.post(action, content=b"\xff\xfe%%%&&==\x00" * 50, headers=FORM)
        _check(web, resp)


def test_gateway_alive_after_fuzzing(web: Web) -> None:
    assert web.gw.proc.poll() is None
    assert httpx.get(f"{web.gw.url}/plans", timeout=10).status_code == 200
