"""The customer self-service API under ``/v1/account``, authenticated with the customer's
own API key (``x-api-key`` or ``Authorization: Bearer``), like the generation endpoints.

Every query is filtered by the caller's account: an id that belongs to another account
answers 404, exactly like an id that does not exist. Operator keys (keys without an
account) are refused with 403. Ledger rows never contain prompts or completions, and
customers do not see upstream names.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claudestore.accounts import accounts, codes, fields, keys, subscriptions, usage
from claudestore.api import openapi, serialize
from claudestore.api.common import (
    EXCEPTION_HANDLERS,
    MIDDLEWARE,
    JSONResponse,
    OnCredit,
    api_key,
    error_response,
    json_body,
    query_int,
    query_str,
    report_credit,
    request_id,
)
from claudestore.core.errors import GatewayError, InvalidRequest, NotFound, PermissionDenied, RateLimited
from claudestore.storage.auth import KeyInfo
from claudestore.storage.db import Database
from claudestore.storage.models import ApiKey, utcnow

Authenticate = Callable[[str | None], Awaitable[KeyInfo]]
#: ``authenticate_client(raw_key, scope)``: the gateway's ``KeyAuthenticator.authenticate_client``,
#: which counts failed attempts per client address and refuses a throttled one (429).
ClientAuthenticate = Callable[[str | None, MutableMapping[str, Any]], Awaitable[KeyInfo]]
OPERATOR_KEY = (
    "This API key belongs to no account (an operator key); the account API needs a key "
    "created for an account."
)
CUSTOMER_GROUPS = ("day", "model", "key")
CUSTOMER_KEY_FIELDS = ("name", "expires_at", "expires_in_days", "allowed_models", *keys.LIMIT_FIELDS)


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: int
    account_id: int


class AccountAPI:
    def __init__(
        self,
        db: Database,
        authenticate: Authenticate,
        on_credit: OnCredit | None,
        authenticate_client: ClientAuthenticate | None = None,
    ) -> None:
        self.db = db
        self.authenticate = authenticate
        self.authenticate_client = authenticate_client
        self.on_credit = on_credit

    async def caller(self, request: Request, session: AsyncSession | None = None) -> Caller:
        """Authenticate, then read the key's account (KeyInfo does not carry it). Without a
        ``session`` the lookup uses its own, so handlers can authenticate before reading the
        body or checking the query string, without holding a connection while they do."""
        raw = api_key(request)
        if self.authenticate_client is not None:
            info = await self.authenticate_client(raw, request.scope)
        else:
            info = await self.authenticate(raw)
        if session is None:
            async with self.db.session() as own:
                key = await keys.get_key(own, info.id)
        else:
            key = await keys.get_key(session, info.id)  # NotFound only if deleted in the meantime
        if key.account_id is None:
            raise PermissionDenied(OPERATOR_KEY)
        return Caller(key.id, key.account_id)

    async def overview(self, request: Request) -> Response:
        now = utcnow()
        async with self.db.session() as s:
            who = await self.caller(request, s)
            account = await accounts.get_account(s, who.account_id)
            current = await subscriptions.active(s, who.account_id)
            quota = None
            if current is not None:
                sub, plan = current
                if plan.quota_tokens is not None:
                    used = await usage.tokens_since(s, who.account_id, sub.period_start)
                    quota = {
                        "limit_tokens": plan.quota_tokens,
                        "used_tokens": used,
                        "remaining_tokens": max(plan.quota_tokens - used, 0),
                        "period_start": sub.period_start,
                        "period_end": sub.period_end,
                    }
        body = serialize.account(account)
        body.pop("balance")
        plan_body = None
        if current is not None:
            plan_body = {
                name: value
                for name, value in serialize.plan(current[1]).items()
                if name not in ("public", "archived_at", "created_at")
            }
        return JSONResponse(
            {
                "account": body,
                "balance": serialize.money(account.balance_nanos),
                "plan": plan_body,
                "subscription": serialize.subscription(current[0], current[1], now) if current else None,
                "quota": quota,
                "key_id": who.key_id,
            }
        )

    async def usage(self, request: Request) -> Response:
        who = await self.caller(request)
        group_by = query_str(request, "group_by")
        if group_by is not None:
            fields.choice(group_by, "group_by", CUSTOMER_GROUPS)
        start, end = usage.time_range(query_str(request, "from"), query_str(request, "to"))
        async with self.db.session() as s:
            filters: dict[str, Any] = {"account_id": who.account_id, "start": start, "end": end}
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
        who = await self.caller(request)
        limit = query_int(request, "limit", 50, minimum=1, maximum=500) or 50
        before_id = query_int(request, "before_id")
        async with self.db.session() as s:
            rows = await usage.recent(s, account_id=who.account_id, limit=limit + 1, before_id=before_id)
        page = rows[:limit]
        return JSONResponse(
            {
                "data": [serialize.usage_record(r, customer=True) for r in page],
                "has_more": len(rows) > limit,
                "next_before_id": page[-1].id if len(rows) > limit else None,
            }
        )

    async def list_keys(self, request: Request) -> Response:
        async with self.db.session() as s:
            who = await self.caller(request, s)
            rows = await keys.list_keys(s, who.account_id)
        return JSONResponse({"data": [serialize.key(k) for k in rows]})

    async def create_key(self, request: Request) -> Response:
        """``name``, ``expires_at`` / ``expires_in_days``, ``allowed_models`` and limits: all of
        them can only narrow what the plan allows, so customers may set them."""
        who = await self.caller(request)
        data = await json_body(request)
        fields.reject_unknown(data, CUSTOMER_KEY_FIELDS)
        async with self.db.session() as s:
            raw, row = await keys.create_account_key(s, who.account_id, data)
            await s.commit()
        return JSONResponse(serialize.created_key(raw, row), status_code=201)

    async def revoke_key(self, request: Request) -> Response:
        who = await self.caller(request)
        key_id = request.path_params["key_id"]
        if not 1 <= key_id <= fields.MAX_INT32:  # beyond the id column: the database cannot bind it
            raise NotFound(f"No API key with id {key_id}.")
        async with self.db.session() as s:
            row: ApiKey = await keys.revoke_key(s, key_id, account_id=who.account_id)
            await s.commit()
        return JSONResponse(serialize.key(row))

    async def redeem(self, request: Request) -> Response:
        who = await self.caller(request)
        data = await json_body(request)
        fields.reject_unknown(data, ("code",))
        if "code" not in data:
            raise InvalidRequest("code: required", param="code")
        async with self.db.session() as s:
            result = await codes.redeem(s, who.account_id, data["code"])
            balance = (await accounts.get_account(s, who.account_id)).balance_nanos
            await s.commit()
        await report_credit(self.on_credit, result.credit_entries)
        sub = result.subscribed
        return JSONResponse(
            {
                "credit_added": serialize.money(sum(e.amount_nanos for e in result.credit_entries)),
                "balance": serialize.money(balance),
                "plan": {"id": sub.plan.id, "name": sub.plan.name} if sub else None,
                "subscription": serialize.subscription(sub.subscription, sub.plan) if sub else None,
            }
        )

    async def openapi_document(self, request: Request) -> Response:
        """The customer API's OpenAPI document; public (it holds no account data)."""
        return JSONResponse(openapi.document(include_admin=False))

    def routes(self) -> list[Route]:
        return [
            Route("/v1/account", self.overview, methods=["GET"]),
            Route("/v1/account/openapi.json", self.openapi_document, methods=["GET"]),
            Route("/v1/account/usage", self.usage, methods=["GET"]),
            Route("/v1/account/requests", self.requests, methods=["GET"]),
            Route("/v1/account/keys", self.list_keys, methods=["GET"]),
            Route("/v1/account/keys", self.create_key, methods=["POST"]),
            Route("/v1/account/keys/{key_id:int}", self.revoke_key, methods=["DELETE"]),
            Route("/v1/account/redeem", self.redeem, methods=["POST"]),
        ]


async def _rate_limited(request: Request, exc: Exception) -> Response:
    """A 429 (a throttled client) with its ``retry-after``."""
    assert isinstance(exc, GatewayError)
    response = error_response(exc, request_id(request))
    if exc.retry_after is not None:
        response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
    return response


def account_app(
    db: Database,
    authenticate: Authenticate,
    *,
    on_credit: OnCredit | None = None,
    authenticate_client: ClientAuthenticate | None = None,
) -> Starlette:
    """The self-service API. ``authenticate`` is the gateway's ``KeyAuthenticator.authenticate``;
    ``authenticate_client``, when given, is used instead with the request's scope (failed-
    authentication throttling per client address); ``on_credit`` is told about credit from
    redeemed codes after they commit."""
    api = AccountAPI(db, authenticate, on_credit, authenticate_client)
    return Starlette(
        routes=api.routes(),
        middleware=list(MIDDLEWARE),
        exception_handlers={**EXCEPTION_HANDLERS, RateLimited: _rate_limited},
    )
