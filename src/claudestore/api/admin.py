"""The operator's admin API under ``/admin``: accounts, members, keys, plans, subscriptions,
credit, prices, redeem codes and usage. JSON in and out; errors in the Anthropic shape.

Authentication: the configured admin key, as ``Authorization: Bearer <key>`` or
``x-api-key``, compared in constant time. Without a configured key every request is
refused (403) with instructions; a customer API key is refused with 403, anything else
with 401. Each handler is one transaction: it commits when the service succeeded, then
reports new credit entries to ``on_credit``.
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from claudestore.accounts import accounts, codes, credit, fields, keys, plans, prices, subscriptions, usage
from claudestore.accounts.money import credit_nanos
from claudestore.api import openapi, serialize
from claudestore.api.common import (
    EXCEPTION_HANDLERS,
    MIDDLEWARE,
    JSONResponse,
    OnCredit,
    api_key,
    checked_ids,
    error_response,
    json_body,
    query_bool,
    query_id,
    query_int,
    query_str,
    report_credit,
    request_id,
)
from claudestore.core.errors import AuthenticationFailed, GatewayError, InvalidRequest, PermissionDenied
from claudestore.storage.db import Database
from claudestore.storage.keys import find_key, looks_like_key

if TYPE_CHECKING:
    from claudestore.admission.auth_throttle import AuthThrottle

log = logging.getLogger("claudestore.api.admin")

ADMIN_KEY_ENV = "CLAUDESTORE_ADMIN_KEY"
NO_ADMIN_KEY = (
    f"The admin API is disabled because no admin key is configured. Set {ADMIN_KEY_ENV} "
    "(or admin.api_key in the config file) to a long random secret, e.g. from "
    "`openssl rand -hex 32`, and restart the gateway."
)
MISSING_ADMIN_KEY = "Missing admin key: send it as Authorization: Bearer <admin key> or in x-api-key."
CUSTOMER_KEY = "API key rejected: customer keys cannot use the admin API. Use the admin key."
WRONG_ADMIN_KEY = "Invalid admin key."
MIN_RECOMMENDED_KEY_LENGTH = 24


class AdminAuth:
    """Checks the admin key before routing, so unknown paths reveal nothing either.

    With a ``throttle`` (``admission.auth_throttle``) every wrong key counts against the
    client's address, and a throttled address is refused with 429 whatever it sends, the
    right admin key included: otherwise the 429 would tell a guesser when a guess was right.
    """

    def __init__(
        self, app: ASGIApp, db: Database, admin_key: str | None, throttle: AuthThrottle | None = None
    ) -> None:
        self.app = app
        self.db = db
        self.key = admin_key.encode() if admin_key else None
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            try:
                await self.check(api_key(request), scope)
            except GatewayError as err:
                response = error_response(err, request_id(request))
                if err.retry_after is not None:
                    response.headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def check(self, raw: str | None, scope: Scope | None = None) -> None:
        """Pass for the admin key; otherwise raise. ``scope`` (the request's) names the client
        for the throttle."""
        if self.key is None:
            raise PermissionDenied(NO_ADMIN_KEY)
        throttle = self.throttle
        client = throttle.client_of(scope) if throttle is not None and scope is not None else None
        if throttle is not None:
            throttle.check(client)
        if raw is None:
            raise AuthenticationFailed(MISSING_ADMIN_KEY)
        if hmac.compare_digest(raw.encode(), self.key):
            return
        if throttle is not None:
            throttle.failed(client)  # counted before the lookup below, which it bounds
        if looks_like_key(raw):
            async with self.db.session() as session:
                if await find_key(session, raw) is not None:
                    raise PermissionDenied(CUSTOMER_KEY)
        raise AuthenticationFailed(WRONG_ADMIN_KEY)


def _list(rows: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"data": rows})


class AdminAPI:
    def __init__(self, db: Database, on_credit: OnCredit | None) -> None:
        self.db = db
        self.on_credit = on_credit

    # -- accounts -------------------------------------------------------------------------

    async def list_accounts(self, request: Request) -> Response:
        limit = query_int(request, "limit", 100, minimum=1, maximum=1000) or 100
        offset = query_int(request, "offset", 0) or 0
        include_disabled = query_bool(request, "include_disabled", True)
        async with self.db.session() as s:
            rows = await accounts.list_accounts(
                s, include_disabled=include_disabled, limit=limit, offset=offset
            )
        return _list([serialize.account(r) for r in rows])

    async def create_account(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            row = await accounts.create_account(s, data)
            await s.commit()
        return JSONResponse(serialize.account(row), status_code=201)

    async def get_account(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        async with self.db.session() as s:
            row = await accounts.get_account(s, account_id)
            current = await subscriptions.active(s, account_id)
        body = serialize.account(row)
        body["subscription"] = serialize.subscription(*current) if current else None
        body["plan"] = serialize.plan(current[1]) if current else None
        return JSONResponse(body)

    async def update_account(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            row = await accounts.update_account(s, request.path_params["account_id"], data)
            await s.commit()
        return JSONResponse(serialize.account(row))

    async def delete_account(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        async with self.db.session() as s:
            await accounts.delete_account(s, account_id, force=query_bool(request, "force", False))
            await s.commit()
        return JSONResponse({"id": account_id, "type": "account", "deleted": True})

    # -- members --------------------------------------------------------------------------

    async def list_members(self, request: Request) -> Response:
        async with self.db.session() as s:
            rows = await accounts.list_members(s, request.path_params["account_id"])
        return _list([serialize.member(m) for m in rows])

    async def add_member(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            row, created = await accounts.add_member(s, request.path_params["account_id"], data)
            await s.commit()
        return JSONResponse(serialize.member(row), status_code=201 if created else 200)

    async def remove_member(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await accounts.remove_member(
                s, request.path_params["account_id"], request.path_params["user_id"]
            )
            await s.commit()
        return JSONResponse({**serialize.member(row), "removed": True})

    # -- keys -----------------------------------------------------------------------------

    async def list_account_keys(self, request: Request) -> Response:
        async with self.db.session() as s:
            rows = await keys.list_keys(s, request.path_params["account_id"])
        return _list([serialize.key(k) for k in rows])

    async def create_account_key(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            raw, row = await keys.create_account_key(s, request.path_params["account_id"], data)
            await s.commit()
        return JSONResponse(serialize.created_key(raw, row), status_code=201)

    async def list_keys(self, request: Request) -> Response:
        async with self.db.session() as s:
            rows = await keys.list_keys(s, query_id(request, "account_id"))
        return _list([serialize.key(k) for k in rows])

    async def get_key(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await keys.get_key(s, request.path_params["key_id"])
        return JSONResponse(serialize.key(row))

    async def update_key(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            row = await keys.update_key(s, request.path_params["key_id"], data)
            await s.commit()
        return JSONResponse(serialize.key(row))

    async def revoke_key(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await keys.revoke_key(s, request.path_params["key_id"])
            await s.commit()
        return JSONResponse(serialize.key(row))

    # -- subscriptions and credit -----------------------------------------------------------

    async def list_subscriptions(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        async with self.db.session() as s:
            await accounts.get_account(s, account_id)
            rows = await subscriptions.history(s, account_id)
        return _list([serialize.subscription(sub, plan) for sub, plan in rows])

    async def subscribe(self, request: Request) -> Response:
        data = await json_body(request)
        fields.reject_unknown(data, ("plan",))
        plan = data.get("plan")
        if isinstance(plan, bool) or not isinstance(plan, int | str):
            raise InvalidRequest("plan: required, a plan id or name", param="plan")
        async with self.db.session() as s:
            result = await subscriptions.subscribe(s, request.path_params["account_id"], plan)
            await s.commit()
        await report_credit(self.on_credit, [result.grant])
        body = {
            "subscription": serialize.subscription(result.subscription, result.plan),
            "plan": serialize.plan(result.plan),
            "grant": serialize.credit_entry(result.grant) if result.grant else None,
            "replaced": result.replaced,
        }
        return JSONResponse(body, status_code=201)

    async def cancel_subscription(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await subscriptions.cancel(s, request.path_params["account_id"])
            await s.commit()
        return JSONResponse(serialize.subscription(row))

    async def list_credit(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        limit = query_int(request, "limit", 50, minimum=1, maximum=1000) or 50
        async with self.db.session() as s:
            await accounts.get_account(s, account_id)
            rows = await credit.history(s, account_id, limit=limit, before_id=query_id(request, "before_id"))
        return _list([serialize.credit_entry(e) for e in rows])

    async def add_credit(self, request: Request) -> Response:
        """``{"usd": "10"}`` or ``{"nanos": ...}``; ``kind``: ``topup`` (default) or ``adjustment``
        (may be negative); ``reference``: free text such as an invoice number."""
        data = await json_body(request)
        fields.reject_unknown(data, ("usd", "nanos", "reference", "kind"))
        kind = fields.choice(data.get("kind", "topup"), "kind", ("topup", "adjustment"))
        if data.get("usd") is None and data.get("nanos") is None:
            raise InvalidRequest("usd: required (or nanos)", param="usd")
        nanos = credit_nanos(data, usd_field="usd", nanos_field="nanos", allow_negative=kind == "adjustment")
        account_id = request.path_params["account_id"]
        async with self.db.session() as s:
            if kind == "topup":
                entry_id = await credit.top_up(s, account_id, nanos, data.get("reference"))
            else:
                entry_id = await credit.adjust(s, account_id, nanos, data.get("reference"))
            entry = await credit.get_entry(s, entry_id)
            balance = await credit.balance(s, account_id)
            await s.commit()
        await report_credit(self.on_credit, [entry])
        return JSONResponse(
            {"entry": serialize.credit_entry(entry), "balance": serialize.money(balance)}, status_code=201
        )

    # -- plans, prices, codes ---------------------------------------------------------------

    async def list_plans(self, request: Request) -> Response:
        async with self.db.session() as s:
            rows = await plans.list_plans(s, include_archived=query_bool(request, "include_archived", False))
        return _list([serialize.plan(p) for p in rows])

    async def create_plan(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            row = await plans.create_plan(s, data)
            await s.commit()
        return JSONResponse(serialize.plan(row), status_code=201)

    async def get_plan(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await plans.get_plan(s, request.path_params["plan_id"])
        return JSONResponse(serialize.plan(row))

    async def update_plan(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            row = await plans.update_plan(s, request.path_params["plan_id"], data)
            await s.commit()
        return JSONResponse(serialize.plan(row))

    async def delete_plan(self, request: Request) -> Response:
        async with self.db.session() as s:
            row, action = await plans.delete_plan(s, request.path_params["plan_id"])
            await s.commit()
        return JSONResponse({**serialize.plan(row), "result": action})

    async def list_prices(self, request: Request) -> Response:
        async with self.db.session() as s:
            rows = await prices.list_prices(s)
        return _list([serialize.price(p) for p in rows])

    async def get_price(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await prices.get_price(s, request.path_params["model"])
        return JSONResponse(serialize.price(row))

    async def set_price(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            row, created = await prices.set_price(s, request.path_params["model"], data)
            await s.commit()
        return JSONResponse(serialize.price(row), status_code=201 if created else 200)

    async def delete_price(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await prices.delete_price(s, request.path_params["model"])
            await s.commit()
        return JSONResponse({**serialize.price(row), "deleted": True})

    async def list_codes(self, request: Request) -> Response:
        limit = query_int(request, "limit", 100, minimum=1, maximum=1000) or 100
        async with self.db.session() as s:
            rows = await codes.list_codes(s, limit=limit, before_id=query_id(request, "before_id"))
        return _list([serialize.code(c) for c in rows])

    async def create_codes(self, request: Request) -> Response:
        data = await json_body(request)
        async with self.db.session() as s:
            made = await codes.create_codes(s, data)
            await s.commit()
        body = {"data": [serialize.code(row, raw) for raw, row in made], "note": "Codes are shown only once."}
        return JSONResponse(body, status_code=201)

    async def delete_code(self, request: Request) -> Response:
        async with self.db.session() as s:
            row = await codes.delete_code(s, request.path_params["code_id"])
            await s.commit()
        return JSONResponse({**serialize.code(row), "deleted": True})

    # -- usage ------------------------------------------------------------------------------

    async def usage(self, request: Request) -> Response:
        group_by = query_str(request, "group_by")
        start, end = usage.time_range(query_str(request, "from"), query_str(request, "to"))
        filters: dict[str, Any] = {
            "account_id": query_id(request, "account_id"),
            "key_id": query_id(request, "key_id"),
            "model": query_str(request, "model"),
            "start": start,
            "end": end,
        }
        async with self.db.session() as s:
            rows = await usage.summarize(s, group_by=group_by, **filters) if group_by else []
            (total,) = await usage.summarize(s, **filters)
        return JSONResponse(
            {
                "group_by": group_by,
                "from": start,
                "to": end,
                "data": [serialize.usage_row(r, group_by) for r in rows],
                "total": serialize.usage_row(total, None),
            }
        )

    async def requests(self, request: Request) -> Response:
        limit = query_int(request, "limit", 50, minimum=1, maximum=500) or 50
        async with self.db.session() as s:
            rows = await usage.recent(
                s,
                account_id=query_id(request, "account_id"),
                key_id=query_id(request, "key_id"),
                limit=limit + 1,
                before_id=query_int(request, "before_id"),
            )
        page = rows[:limit]
        return JSONResponse(
            {
                "data": [serialize.usage_record(r, customer=False) for r in page],
                "has_more": len(rows) > limit,
                "next_before_id": page[-1].id if len(rows) > limit else None,
            }
        )

    async def openapi_document(self, request: Request) -> Response:
        """The OpenAPI document of the admin API and the customer API (``api/openapi/``)."""
        return JSONResponse(openapi.document())

    def routes(self) -> list[Route]:
        a, k = "/admin/accounts/{account_id:int}", "/admin/keys/{key_id:int}"
        p, m = "/admin/plans/{plan_id:int}", "/admin/prices/{model:path}"
        table = [
            ("/admin/accounts", {"GET": self.list_accounts, "POST": self.create_account}),
            (a, {"GET": self.get_account, "PATCH": self.update_account, "DELETE": self.delete_account}),
            (f"{a}/members", {"GET": self.list_members, "POST": self.add_member}),
            (f"{a}/members/{{user_id:int}}", {"DELETE": self.remove_member}),
            (f"{a}/keys", {"GET": self.list_account_keys, "POST": self.create_account_key}),
            (f"{a}/subscriptions", {"GET": self.list_subscriptions}),
            (f"{a}/subscription", {"POST": self.subscribe, "DELETE": self.cancel_subscription}),
            (f"{a}/credit", {"GET": self.list_credit, "POST": self.add_credit}),
            ("/admin/keys", {"GET": self.list_keys}),
            (k, {"GET": self.get_key, "PATCH": self.update_key, "DELETE": self.revoke_key}),
            ("/admin/plans", {"GET": self.list_plans, "POST": self.create_plan}),
            (p, {"GET": self.get_plan, "PATCH": self.update_plan, "DELETE": self.delete_plan}),
            ("/admin/prices", {"GET": self.list_prices}),
            (m, {"GET": self.get_price, "PUT": self.set_price, "DELETE": self.delete_price}),
            ("/admin/codes", {"GET": self.list_codes, "POST": self.create_codes}),
            ("/admin/codes/{code_id:int}", {"DELETE": self.delete_code}),
            ("/admin/usage", {"GET": self.usage}),
            ("/admin/usage/requests", {"GET": self.requests}),
            ("/admin/openapi.json", {"GET": self.openapi_document}),
        ]
        return [
            Route(path, checked_ids(handler), methods=[method])
            for path, handlers in table
            for method, handler in handlers.items()
        ]


def admin_app(
    db: Database,
    *,
    admin_key: str | None,
    on_credit: OnCredit | None = None,
    throttle: AuthThrottle | None = None,
) -> Starlette:
    """The admin API. ``admin_key`` None (or empty) disables it: every request gets 403.
    ``throttle`` counts wrong keys per client address (see :class:`AdminAuth`)."""
    admin_key = admin_key or None
    if admin_key is not None and len(admin_key) < MIN_RECOMMENDED_KEY_LENGTH:
        log.warning(
            "The admin key is shorter than %d characters; use a long random secret.",
            MIN_RECOMMENDED_KEY_LENGTH,
        )
    api = AdminAPI(db, on_credit)
    return Starlette(
        routes=api.routes(),
        middleware=[*MIDDLEWARE, Middleware(AdminAuth, db=db, admin_key=admin_key, throttle=throttle)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
