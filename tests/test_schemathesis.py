"""The admin API and the customer API against their OpenAPI document (``api/openapi/``).

- The document is valid OpenAPI 3.1 (openapi-spec-validator) and schemathesis loads it.
- It documents every route the two Starlette apps expose, plus ``/admin/upstreams`` (served by
  the gateway itself), and nothing else: a new route without documentation fails here.
- The gateway serves it: the whole document at ``/admin/openapi.json`` (admin key), the
  customer part at ``/v1/account/openapi.json`` (no key).
- schemathesis generates requests for every operation (the document's examples, then random
  fuzzing of valid and invalid inputs; the long run adds the coverage phase's boundary values
  and undocumented methods) and sends them to a real gateway in front of the fake upstream, on
  SQLite and on PostgreSQL (whose 32-bit id columns found most of the bugs pinned in
  test_fuzz_regressions.py). Every response must: not be a 5xx; have a documented status and
  content type; conform to the documented schema; and, for an error, be the API's error
  envelope with its ``request-id`` / ``x-request-id`` headers.

The gateway is seeded with a price, a plan, a customer account with credit, a member, a key,
a redeem code and a few ledger rows, and two thirds of the large generated ids are mapped onto
1..8 (``map_path_parameters``), so that success responses are validated too. Cases that would
delete the seeded account or revoke its keys are not sent (``World.protects``).

Budget: ``CLAUDESTORE_SCHEMATHESIS_EXAMPLES`` examples per operation (default 6, derandomized):
about 230 requests per backend, some 25 s in all. ``scripts/schemathesis_long.py`` runs the same
test with many more, random, with the coverage phase, and reports the figures
(``CLAUDESTORE_SCHEMATHESIS_REPORT``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as st_checks
from starlette.routing import Route

from claudestore.api.account import account_app
from claudestore.api.admin import admin_app
from claudestore.api.openapi import document
from claudestore.storage.db import Database
from tests.support.databases import postgres_database
from tests.support.envelopes import anthropic_error, rss_kib
from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

EXAMPLES = int(os.environ.get("CLAUDESTORE_SCHEMATHESIS_EXAMPLES", "6"))
RANDOM = os.environ.get("CLAUDESTORE_SCHEMATHESIS_RANDOM") == "1"  # else derandomized (CI)
REPORT = os.environ.get("CLAUDESTORE_SCHEMATHESIS_REPORT")
#: schemathesis phases: CI skips "coverage" (its boundary values and unexpected methods alone
#: send ~2,000 requests); the long run (scripts/schemathesis_long.py) adds it.
PHASES = os.environ.get("CLAUDESTORE_SCHEMATHESIS_PHASES", "examples,fuzzing").split(",")
#: Both backends by default: the id columns' range differs (PostgreSQL INTEGER is 32-bit).
BACKENDS = os.environ.get("CLAUDESTORE_SCHEMATHESIS_BACKENDS", "sqlite,postgres").split(",")
STATS: dict[str, Stats] = {}  # per backend, for the report
SEEDED: dict[str, str] = {}  # the current gateway's redeem code and its id (map_body, protects)
#: Also schemathesis' other checks (data acceptance and rejection, unsupported methods, auth...):
#: exploratory, for the long run; the document does not promise everything those assume.
ALL_CHECKS = os.environ.get("CLAUDESTORE_SCHEMATHESIS_ALL_CHECKS") == "1"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
#: Routes of the gateway itself under /admin (server/app.py), not of the Starlette admin app.
GATEWAY_ADMIN_ROUTES = {("GET", "/admin/upstreams")}


# -- the document ----------------------------------------------------------------------------------


def _starlette_routes(app: Any) -> set[tuple[str, str]]:
    """``(method, OpenAPI path)`` for every route of a Starlette app (HEAD comes with GET)."""
    out = set()
    for route in app.routes:
        assert isinstance(route, Route), route
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        out |= {(method, path) for method in route.methods or () if method != "HEAD"}
    return out


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def test_document_is_valid_openapi() -> None:
    for doc in (document(), document(include_admin=False)):
        validate(doc)
        schema = schemathesis.openapi.from_dict(doc)
        assert len(list(schema.get_all_operations())) == len(_documented(doc))


def test_document_lists_every_route() -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    admin = _starlette_routes(admin_app(db, admin_key="k" * 32))
    customer = _starlette_routes(account_app(db, authenticate=None))  # type: ignore[arg-type]
    assert _documented(document()) == admin | customer | GATEWAY_ADMIN_ROUTES
    assert _documented(document(include_admin=False)) == customer


def test_every_operation_is_secured_and_has_error_responses() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            public = op.get("security") == []
            assert public == (path == "/v1/account/openapi.json"), (method, path)
            codes = set(op["responses"])
            assert {"401", "403"} <= codes or public, (method, path, codes)
            if "requestBody" in op:
                assert {"400", "413"} <= codes, (method, path, codes)
            if any(p["in"] == "path" for p in op.get("parameters", [])):
                assert "404" in codes, (method, path, codes)


# -- the gateway under test --------------------------------------------------------------------------


@dataclass
class Stats:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    rss_kib: list[tuple[int, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(sorted(self.by_status.items())),
            "by_operation": dict(sorted(self.by_operation.items())),
            "rss_kib": self.rss_kib,
        }


class CountingSession(requests.Session):
    """Counts every request schemathesis sends through it (checks that re-send included)."""

    def __init__(self, stats: Stats) -> None:
        super().__init__()
        self.stats = stats

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        self.stats.requests += 1
        self.stats.by_status[response.status_code] += 1
        return response


@dataclass
class World:
    gw: Gateway
    customer_key: str
    key_id: int
    operator_key_id: int
    account_id: int
    stats: Stats
    session: requests.Session

    def auth(self, case: schemathesis.Case) -> dict[str, str]:
        path = case.operation.path
        if path == "/v1/account/openapi.json":
            return {}
        if path.startswith("/v1/account"):
            return {"x-api-key": self.customer_key}
        return dict(ADMIN)

    def protects(self, case: schemathesis.Case) -> bool:
        """Whether ``case`` would delete or disable what the other operations need (the seeded
        account, its key, the operator key, the redeem code). Ids are compared as text: the
        coverage phase sends path parameters as strings."""
        params = {name: str(value) for name, value in (case.path_parameters or {}).items()}
        body = case.body if isinstance(case.body, dict) else {}
        method, path = case.method.upper(), case.operation.path
        if path == "/admin/accounts/{account_id}" and params.get("account_id") == str(self.account_id):
            return method == "DELETE" or (method == "PATCH" and body.get("disabled") is True)
        if method == "DELETE" and path == "/admin/codes/{code_id}":
            return params.get("code_id") == SEEDED.get("code_id")
        if method in ("DELETE", "PATCH") and path in ("/admin/keys/{key_id}", "/v1/account/keys/{key_id}"):
            return params.get("key_id") in (str(self.key_id), str(self.operator_key_id))
        return False


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def seed(http: httpx.Client) -> dict[str, Any]:
    """A price, a plan, an account on it with credit, a member, a key, a code, ledger rows."""
    _ok(http.put("/admin/prices/claude-test", json={"input": "3", "output": "15"}, headers=ADMIN), 201)
    _ok(http.post("/admin/plans", json={"name": "st-plan", "quota_tokens": 10**9}, headers=ADMIN), 201)
    account = _ok(http.post("/admin/accounts", json={"name": "st-customer"}, headers=ADMIN), 201)
    a = f"/admin/accounts/{account['id']}"
    _ok(http.post(f"{a}/subscription", json={"plan": "st-plan"}, headers=ADMIN), 201)
    _ok(http.post(f"{a}/credit", json={"usd": "1000"}, headers=ADMIN), 201)
    _ok(http.post(f"{a}/members", json={"email": "owner@st.example", "role": "owner"}, headers=ADMIN), 201)
    key = _ok(http.post(f"{a}/keys", json={"name": "st"}, headers=ADMIN), 201)
    made = _ok(http.post("/admin/codes", json={"credit_usd": "1", "max_uses": 1000}, headers=ADMIN), 201)
    SEEDED["code"], SEEDED["code_id"] = made["data"][0]["code"], str(made["data"][0]["id"])
    customer = {"x-api-key": key["key"], "anthropic-version": "2023-06-01"}
    message = {"model": "claude-test", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    _ok(http.post("/v1/messages", json=message, headers=customer))
    _ok(http.post("/v1/messages", json={**message, "model": "no-such-model"}, headers=customer), 404)
    _ok(http.post("/v1/chat/completions", json=message, headers={"authorization": f"Bearer {key['key']}"}))
    operator = [k for k in _ok(http.get("/admin/keys", headers=ADMIN))["data"] if k["account_id"] is None]
    return {"account": account, "key": key, "operator_key_id": operator[0]["id"]}


def write_report() -> None:
    if REPORT:
        Path(REPORT).write_text(json.dumps({k: v.as_dict() for k, v in STATS.items()}, indent=1))


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=BACKENDS)
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream
) -> AsyncIterator[World]:
    """A seeded gateway on each backend (PostgreSQL: skipped when unreachable, as elsewhere)."""
    tmp: Path = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}"
        else:
            url = await stack.enter_async_context(postgres_database())
        gw = start_gateway(tmp, fake_upstream, url, name="st")
        stats = STATS.setdefault(request.param, Stats())
        try:
            with httpx.Client(base_url=gw.url, timeout=30) as http:
                seeded = seed(http)
            session = CountingSession(stats)
            stats.rss_kib.append((stats.requests, rss_kib(gw.proc.pid)))
            yield World(
                gw,
                seeded["key"]["key"],
                seeded["key"]["id"],
                seeded["operator_key_id"],
                seeded["account"]["id"],
                stats,
                session,
            )
            stats.rss_kib.append((stats.requests, rss_kib(gw.proc.pid)))
            session.close()
            assert gw.proc.poll() is None, f"gateway exited with {gw.proc.returncode}"
        finally:
            write_report()
            stop(gw.proc)


def test_served_documents(world: World) -> None:
    with httpx.Client(base_url=world.gw.url, timeout=30) as http:
        assert _ok(http.get("/admin/openapi.json", headers=ADMIN)) == document()
        assert _ok(http.get("/v1/account/openapi.json")) == document(include_admin=False)
        anthropic_error(http.get("/admin/openapi.json"))  # the admin document needs the admin key


# -- schemathesis ------------------------------------------------------------------------------------


def error_envelope(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every response carries request-id = x-request-id; every error is the API's envelope."""
    rid = response.headers.get("request-id", [None])[0]
    assert rid and rid.startswith("req_"), f"no request-id header: {response.headers}"
    assert response.headers.get("x-request-id", [None])[0] == rid, "x-request-id differs from request-id"
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error" and body["request_id"] == rid, body
    assert set(body["error"]) == {"type", "message"} and body["error"]["message"], body
    assert "Traceback" not in body["error"]["message"], body
    return None


CHECKS = [
    not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
    error_envelope,
]

schema = schemathesis.openapi.from_dict(document())
for phase in ("examples", "coverage", "fuzzing", "stateful"):
    schema.config.phases.get_by_name(name=phase).enabled = phase in PHASES
schema.config.generation.update(
    max_examples=EXAMPLES,
    deterministic=not RANDOM,
    with_security_parameters=False,
    database="none",
)


SEEDED_IDS = 8  # the seed and the first operations create rows with ids 1 to about 8


@schema.hook
def map_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Bias the generated ids toward rows that exist: two thirds of the large ids become one of
    1..8 (the rest, like 2**31 - 1, still take the not-found paths)."""
    if not path_parameters:
        return path_parameters
    out = dict(path_parameters)
    for name, value in path_parameters.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > SEEDED_IDS and value % 3:
            out[name] = value % SEEDED_IDS + 1
        elif name == "model" and isinstance(value, str) and len(value) % 3 == 1:
            out[name] = "claude-test"
    return out


@schema.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    """A third of the redeem requests carry the seeded code (the first one per account succeeds)."""
    operation = context.operation
    if (
        operation is not None
        and operation.path == "/v1/account/redeem"
        and isinstance(body, dict)
        and isinstance(body.get("code"), str)
        and len(body["code"]) % 3 == 1
        and "code" in SEEDED
    ):
        return {**body, "code": SEEDED["code"]}
    return body


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=not RANDOM, database=None)
def test_api_conforms_to_its_document(case: schemathesis.Case, world: World) -> None:
    if world.protects(case):
        return
    headers = world.auth(case)
    response = case.call(base_url=world.gw.url, session=world.session, headers=headers, timeout=30)
    world.stats.by_operation[f"{case.method.upper()} {case.operation.path} {response.status_code}"] += 1
    if ALL_CHECKS:  # every schemathesis check (scripts/schemathesis_long.py --all-checks)
        case.validate_response(response, additional_checks=[error_envelope], headers=headers)
    else:
        case.validate_response(response, checks=CHECKS, headers=headers)
    assert world.gw.proc.poll() is None, f"gateway exited with {world.gw.proc.returncode}"
