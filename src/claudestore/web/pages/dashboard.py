"""The customer dashboard: overview, plans, API keys, usage, redeeming codes."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from claudestore.accounts import checkout, codes, keys, subscriptions, usage
from claudestore.accounts.accounts import get_account
from claudestore.accounts.fields import MAX_INT32
from claudestore.core.errors import GatewayError, NotFound
from claudestore.storage.models import utcnow
from claudestore.web import catalog, charts
from claudestore.web.render import page, usd
from claudestore.web.sessions import Visitor
from claudestore.web.site import Site, text_field

RANGES = (7, 30, 90)


def routes(site: Site) -> list[Route]:
    async def plan_state(account_id: int) -> dict[str, object]:
        async with site.db.session() as s:
            current = await subscriptions.active(s, account_id)
            quota = None
            if current is not None and current[1].quota_tokens is not None:
                used = await usage.tokens_since(s, account_id, current[0].period_start)
                quota = {
                    "limit": current[1].quota_tokens,
                    "used": used,
                    "percent": min(100, round(100 * used / max(current[1].quota_tokens, 1))),
                }
            key_rows = await keys.list_keys(s, account_id)
        return {
            "subscription": current[0] if current else None,
            "plan": current[1] if current else None,
            "quota": quota,
            "active_keys": sum(1 for k in key_rows if k.status() == "active"),
        }

    async def overview(request: Request, visitor: Visitor) -> Response:
        assert visitor.account is not None
        state = await plan_state(visitor.account.id)
        return page(
            request, "dashboard/overview.html", account=visitor.account, message=None, error=None, **state
        )

    async def plans(
        request: Request, visitor: Visitor, error: str | None = None, status: int = 200
    ) -> Response:
        assert visitor.account is not None
        async with site.db.session() as s:
            offers = await catalog.offers(s, site.config)
            current = await subscriptions.active(s, visitor.account.id)
        return page(
            request,
            "dashboard/plans.html",
            status,
            offers=offers,
            account=visitor.account,
            current=current[1] if current else None,
            error=error,
        )

    async def choose(request: Request, visitor: Visitor) -> Response:
        assert visitor.account is not None
        await site.form(request, visitor)
        plan_id = request.path_params["plan_id"]
        try:
            if not 1 <= plan_id <= MAX_INT32:
                raise NotFound(f"No plan with id {plan_id}.")
            async with site.db.session() as s:
                paid = await checkout.choose_plan(s, visitor.account.id, plan_id, site.payments)
                await s.commit()
        except GatewayError as err:
            return await plans(request, visitor, err.message, err.status)
        await site.credited(paid.credit_entries)
        if paid.status == "pending" and paid.url:
            return RedirectResponse(paid.url, status_code=303)
        async with site.db.session() as s:
            has_key = await keys.list_keys(s, visitor.account.id)
        return RedirectResponse("/dashboard" if has_key else "/dashboard/keys", status_code=303)

    async def key_page(
        request: Request,
        visitor: Visitor,
        *,
        created: tuple[str, object] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        assert visitor.account is not None
        async with site.db.session() as s:
            rows = await keys.list_keys(s, visitor.account.id)
            current = await subscriptions.active(s, visitor.account.id)
        models = catalog.allowed(current[1].allowed_models if current else None, catalog.models(site.config))
        return page(
            request,
            "dashboard/keys.html",
            status,
            keys=rows,
            created=created,
            error=error,
            has_plan=current is not None,
            example_model=models[0].id if models else "claude-sonnet-4-5",
        )

    async def keys_list(request: Request, visitor: Visitor) -> Response:
        return await key_page(request, visitor)

    async def keys_create(request: Request, visitor: Visitor) -> Response:
        assert visitor.account is not None
        data = await site.form(request, visitor)
        name = text_field(data, "name").strip() or "default"
        try:
            async with site.db.session() as s:
                raw, row = await keys.create_account_key(s, visitor.account.id, {"name": name})
                await s.commit()
        except GatewayError as err:
            return await key_page(request, visitor, error=err.message, status=err.status)
        response = await key_page(request, visitor, created=(raw, row))
        response.headers["cache-control"] = "no-store"
        return response

    async def keys_revoke(request: Request, visitor: Visitor) -> Response:
        assert visitor.account is not None
        await site.form(request, visitor)
        key_id = request.path_params["key_id"]
        try:
            if not 1 <= key_id <= MAX_INT32:
                raise NotFound(f"No API key with id {key_id}.")
            async with site.db.session() as s:
                await keys.revoke_key(s, key_id, account_id=visitor.account.id)
                await s.commit()
        except GatewayError as err:
            return await key_page(request, visitor, error=err.message, status=err.status)
        return RedirectResponse("/dashboard/keys", status_code=303)

    async def usage_page(request: Request, visitor: Visitor) -> Response:
        assert visitor.account is not None
        raw = request.query_params.get("days", "30")
        span = int(raw) if raw.isdigit() and int(raw) in RANGES else 30
        today = utcnow().date()
        start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=span - 1)
        account_id = visitor.account.id
        async with site.db.session() as s:
            per_day = await usage.summarize(s, account_id=account_id, start=start, group_by="day")
            per_model = await usage.summarize(s, account_id=account_id, start=start, group_by="model")
            (total,) = await usage.summarize(s, account_id=account_id, start=start)
            recent = await usage.recent(s, account_id=account_id, limit=50)
        token_chart, cost_chart = charts.daily_usage(per_day, today, span, usd)
        return page(
            request,
            "dashboard/usage.html",
            span=span,
            ranges=RANGES,
            total=total,
            per_model=per_model,
            per_day=per_day,
            recent=recent,
            token_chart=token_chart,
            cost_chart=cost_chart,
        )

    async def redeem(request: Request, visitor: Visitor) -> Response:
        assert visitor.account is not None
        data = await site.form(request, visitor)
        try:
            async with site.db.session() as s:
                result = await codes.redeem(s, visitor.account.id, text_field(data, "code"))
                await s.commit()
        except GatewayError as err:
            state = await plan_state(visitor.account.id)
            return page(
                request,
                "dashboard/overview.html",
                err.status,
                account=visitor.account,
                message=None,
                error=err.message,
                **state,
            )
        await site.credited(result.credit_entries)
        async with site.db.session() as s:
            account = await get_account(s, visitor.account.id)
        state = await plan_state(visitor.account.id)
        added = sum(e.amount_nanos for e in result.credit_entries)
        note = "Code redeemed."
        if result.subscribed is not None:
            note += f" You are now on the {result.subscribed.plan.name} plan."
        if added:
            note += " Credit was added to your balance."
        return page(request, "dashboard/overview.html", account=account, message=note, error=None, **state)

    return [
        Route("/dashboard", site.customer(overview), methods=["GET"]),
        Route("/dashboard/plans", site.customer(plans), methods=["GET"]),
        Route("/dashboard/plans/{plan_id:int}", site.customer(choose), methods=["POST"]),
        Route("/dashboard/keys", site.customer(keys_list), methods=["GET"]),
        Route("/dashboard/keys", site.customer(keys_create), methods=["POST"]),
        Route("/dashboard/keys/{key_id:int}/revoke", site.customer(keys_revoke), methods=["POST"]),
        Route("/dashboard/usage", site.customer(usage_page), methods=["GET"]),
        Route("/dashboard/redeem", site.customer(redeem), methods=["POST"]),
    ]
