"""What the store sells and how it bills: the console's plans, model prices and redeem codes.

New redeem codes are shown once, in the response to the POST that created them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from claudestore.accounts import codes, plans, prices
from claudestore.core.errors import GatewayError
from claudestore.storage.models import utcnow
from claudestore.web.pages.console.forms import (
    PERIOD_OPTIONS,
    PLAN_CHECKBOXES,
    PLAN_DEFAULTS,
    PLAN_TEXT_FIELDS,
    amount,
    decimal_text,
    path_id,
    per_mtok,
    plan_data,
    plan_form,
    typed,
    whole,
)
from claudestore.web.pages.console.notices import notice
from claudestore.web.render import page
from claudestore.web.sessions import Visitor
from claudestore.web.site import Site, text_field

PRICE_FIELDS = ("model", "input", "output", "cache_write", "cache_read")
CODE_FIELDS = ("count", "credit_usd", "plan", "max_uses", "expires_in_days")
CODE_DEFAULTS = {"count": "1", "max_uses": "1"}
#: Redeem codes listed (the newest first).
CODES_SHOWN = 100


def routes(site: Site) -> list[Route]:
    # -- plans ------------------------------------------------------------------------------

    async def plans_page(
        request: Request,
        *,
        form: Mapping[str, str] | None = None,
        error: str | None = None,
        invalid: str | None = None,
        status: int = 200,
    ) -> Response:
        async with site.db.session() as s:
            rows = await plans.list_plans(s, include_archived=True)
        return page(
            request,
            "console/plans.html",
            status,
            plans=rows,
            periods=PERIOD_OPTIONS,
            form=PLAN_DEFAULTS if form is None else form,
            error=error,
            invalid=invalid,
            message=notice(request),
        )

    async def plans_list(request: Request, visitor: Visitor) -> Response:
        return await plans_page(request)

    async def plans_create(request: Request, visitor: Visitor) -> Response:
        data = await site.form(request, visitor)
        entered = typed(data, PLAN_TEXT_FIELDS, PLAN_CHECKBOXES)
        try:
            async with site.db.session() as s:
                row = await plans.create_plan(s, plan_data(entered))
                await s.commit()
        except GatewayError as err:
            return await plans_page(
                request, form=entered, error=err.message, invalid=err.param, status=err.status
            )
        return RedirectResponse(f"/console/plans?done=plan-created#plan-{row.id}", status_code=303)

    async def plan_page(
        request: Request,
        plan_id: int,
        *,
        form: Mapping[str, str] | None = None,
        error: str | None = None,
        invalid: str | None = None,
        status: int = 200,
    ) -> Response:
        async with site.db.session() as s:
            plan = await plans.get_plan(s, plan_id)
        return page(
            request,
            "console/plan.html",
            status,
            plan=plan,
            periods=PERIOD_OPTIONS,
            form=plan_form(plan) if form is None else form,
            error=error,
            invalid=invalid,
            message=notice(request),
        )

    async def plan_detail(request: Request, visitor: Visitor) -> Response:
        return await plan_page(request, path_id(request, "plan_id", "plan"))

    async def plan_update(request: Request, visitor: Visitor) -> Response:
        plan_id = path_id(request, "plan_id", "plan")
        data = await site.form(request, visitor)
        entered = typed(data, PLAN_TEXT_FIELDS, PLAN_CHECKBOXES)
        try:
            async with site.db.session() as s:
                await plans.update_plan(s, plan_id, plan_data(entered))
                await s.commit()
        except GatewayError as err:
            return await plan_page(
                request, plan_id, form=entered, error=err.message, invalid=err.param, status=err.status
            )
        return RedirectResponse(f"/console/plans/{plan_id}?done=plan-saved", status_code=303)

    async def plan_archive(request: Request, visitor: Visitor) -> Response:
        plan_id = path_id(request, "plan_id", "plan")
        data = await site.form(request, visitor)
        archived = text_field(data, "archived") != "false"
        try:
            async with site.db.session() as s:
                await plans.update_plan(s, plan_id, {"archived": archived})
                await s.commit()
        except GatewayError as err:
            return await plan_page(request, plan_id, error=err.message, status=err.status)
        done = "plan-archived" if archived else "plan-restored"
        return RedirectResponse(f"/console/plans/{plan_id}?done={done}", status_code=303)

    async def plan_delete(request: Request, visitor: Visitor) -> Response:
        plan_id = path_id(request, "plan_id", "plan")
        await site.form(request, visitor)
        try:
            async with site.db.session() as s:
                _, action = await plans.delete_plan(s, plan_id)
                await s.commit()
        except GatewayError as err:
            return await plan_page(request, plan_id, error=err.message, status=err.status)
        if action == "deleted":
            return RedirectResponse("/console/plans?done=plan-deleted", status_code=303)
        return RedirectResponse(f"/console/plans/{plan_id}?done=plan-in-use", status_code=303)

    # -- prices -----------------------------------------------------------------------------

    async def prices_page(
        request: Request,
        *,
        form: Mapping[str, str] | None = None,
        error: str | None = None,
        invalid: str | None = None,
        status: int = 200,
    ) -> Response:
        async with site.db.session() as s:
            rows = await prices.list_prices(s)
        if form is None:
            chosen = request.query_params.get("model", "")
            existing = next((r for r in rows if r.model == chosen), None)
            form = {"model": chosen[:200]}
            if existing is not None:
                form.update(
                    input=decimal_text(existing.input_per_mtok),
                    output=decimal_text(existing.output_per_mtok),
                    cache_write=decimal_text(existing.cache_write_per_mtok),
                    cache_read=decimal_text(existing.cache_read_per_mtok),
                )
        models = [m.id for m in site.config.models]
        listed = [
            {
                "model": r.model,
                "input": per_mtok(r.input_per_mtok),
                "output": per_mtok(r.output_per_mtok),
                "cache_write": per_mtok(r.cache_write_per_mtok),
                "cache_read": per_mtok(r.cache_read_per_mtok),
                "updated_at": r.updated_at,
            }
            for r in rows
        ]
        return page(
            request,
            "console/prices.html",
            status,
            prices=listed,
            form=form,
            models=models,
            error=error,
            invalid=invalid,
            message=notice(request),
        )

    async def prices_list(request: Request, visitor: Visitor) -> Response:
        return await prices_page(request)

    async def prices_set(request: Request, visitor: Visitor) -> Response:
        data = await site.form(request, visitor)
        entered = typed(data, PRICE_FIELDS)
        values = {name: amount(entered, name) for name in ("input", "output", "cache_write", "cache_read")}
        try:
            async with site.db.session() as s:
                await prices.set_price(
                    s, entered["model"], {k: v for k, v in values.items() if v is not None}
                )
                await s.commit()
        except GatewayError as err:
            return await prices_page(
                request, form=entered, error=err.message, invalid=err.param, status=err.status
            )
        return RedirectResponse("/console/prices?done=price-saved", status_code=303)

    async def prices_delete(request: Request, visitor: Visitor) -> Response:
        data = await site.form(request, visitor)
        try:
            async with site.db.session() as s:
                await prices.delete_price(s, text_field(data, "model"))
                await s.commit()
        except GatewayError as err:
            return await prices_page(request, error=err.message, status=err.status)
        return RedirectResponse("/console/prices?done=price-deleted", status_code=303)

    # -- redeem codes -----------------------------------------------------------------------

    async def codes_page(
        request: Request,
        *,
        form: Mapping[str, str] | None = None,
        error: str | None = None,
        invalid: str | None = None,
        status: int = 200,
        created: list[tuple[str, Any]] | None = None,
    ) -> Response:
        async with site.db.session() as s:
            rows = await codes.list_codes(s, limit=CODES_SHOWN)
            plan_rows = await plans.list_plans(s, include_archived=True)
        return page(
            request,
            "console/codes.html",
            status,
            codes=rows,
            plan_names={p.id: p.name for p in plan_rows},
            plan_options=[("", "No plan"), *((p.id, p.name) for p in plan_rows if p.archived_at is None)],
            form=form or CODE_DEFAULTS,
            created=created,
            error=error,
            invalid=invalid,
            message=notice(request),
            now=utcnow(),
        )

    async def codes_list(request: Request, visitor: Visitor) -> Response:
        return await codes_page(request)

    async def codes_create(request: Request, visitor: Visitor) -> Response:
        data = await site.form(request, visitor)
        entered = typed(data, CODE_FIELDS)
        try:
            spec: dict[str, Any] = {
                "count": whole(entered, "count"),
                "credit_usd": amount(entered, "credit_usd"),
                "plan": whole(entered, "plan"),
                "max_uses": whole(entered, "max_uses"),
                "expires_in_days": whole(entered, "expires_in_days"),
            }
            async with site.db.session() as s:
                made = await codes.create_codes(s, {k: v for k, v in spec.items() if v is not None})
                await s.commit()
        except GatewayError as err:
            return await codes_page(
                request, form=entered, error=err.message, invalid=err.param, status=err.status
            )
        return await codes_page(request, form=entered, created=made)

    async def codes_delete(request: Request, visitor: Visitor) -> Response:
        await site.form(request, visitor)
        try:
            code_id = path_id(request, "code_id", "redeem code")
            async with site.db.session() as s:
                await codes.delete_code(s, code_id)
                await s.commit()
        except GatewayError as err:
            return await codes_page(request, error=err.message, status=err.status)
        return RedirectResponse("/console/codes?done=code-deleted", status_code=303)

    p = "/console/plans/{plan_id:int}"
    table: list[tuple[str, str, Any]] = [
        ("/console/plans", "GET", plans_list),
        ("/console/plans", "POST", plans_create),
        (p, "GET", plan_detail),
        (p, "POST", plan_update),
        (f"{p}/archive", "POST", plan_archive),
        (f"{p}/delete", "POST", plan_delete),
        ("/console/prices", "GET", prices_list),
        ("/console/prices", "POST", prices_set),
        ("/console/prices/delete", "POST", prices_delete),
        ("/console/codes", "GET", codes_list),
        ("/console/codes", "POST", codes_create),
        ("/console/codes/{code_id:int}/delete", "POST", codes_delete),
    ]
    return [Route(path, site.admin(handler), methods=[method]) for path, method, handler in table]
