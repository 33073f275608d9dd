"""The console's accounts: the list (one page at a time) with a form to create one, and an
account's page with its POST actions: details, credit, plan, status, members and API keys.

A new API key is shown once, in the response to the POST that created it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from claudestore.accounts import accounts, credit, fields, keys, plans, subscriptions, usage
from claudestore.accounts.fields import MAX_INT32
from claudestore.accounts.money import credit_nanos
from claudestore.core.errors import GatewayError, InvalidRequest, NotFound
from claudestore.web.pages.console.forms import amount, path_id, typed, whole
from claudestore.web.pages.console.notices import notice
from claudestore.web.pages.console.overview import midnight_days_ago
from claudestore.web.render import page
from claudestore.web.sessions import Visitor
from claudestore.web.site import Site, text_field

PAGE_SIZE = 100


def routes(site: Site) -> list[Route]:
    async def accounts_page(
        request: Request,
        *,
        form: Mapping[str, str] | None = None,
        error: str | None = None,
        invalid: str | None = None,
        status: int = 200,
    ) -> Response:
        raw = request.query_params.get("page", "1")
        number = int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1
        async with site.db.session() as s:
            rows = await accounts.list_accounts(s, limit=PAGE_SIZE + 1, offset=(number - 1) * PAGE_SIZE)
            shown = rows[:PAGE_SIZE]
            current = await subscriptions.active_for(s, [a.id for a in shown])
        listed = [(a, current[a.id][1] if a.id in current else None) for a in shown]
        return page(
            request,
            "console/accounts.html",
            status,
            accounts=listed,
            page_number=number,
            has_more=len(rows) > PAGE_SIZE,
            form=form or {"kind": "person"},
            error=error,
            invalid=invalid,
            message=notice(request),
        )

    async def accounts_list(request: Request, visitor: Visitor) -> Response:
        return await accounts_page(request)

    async def accounts_create(request: Request, visitor: Visitor) -> Response:
        data = await site.form(request, visitor)
        entered = typed(data, ("name", "email", "kind"))
        try:
            async with site.db.session() as s:
                row = await accounts.create_account(
                    s,
                    {
                        "name": entered["name"],
                        "email": entered["email"].strip(),
                        "kind": entered["kind"] or "person",
                    },
                )
                await s.commit()
        except GatewayError as err:
            return await accounts_page(
                request, form=entered, error=err.message, invalid=err.param, status=err.status
            )
        return RedirectResponse(f"/console/accounts/{row.id}?done=account-created", status_code=303)

    async def account_page(
        request: Request,
        account_id: int,
        *,
        forms: Mapping[str, Mapping[str, str]] | None = None,
        error: str | None = None,
        invalid: str | None = None,
        status: int = 200,
        created_key: tuple[str, Any] | None = None,
    ) -> Response:
        async with site.db.session() as s:
            account = await accounts.get_account(s, account_id)
            members = await accounts.list_members(s, account_id)
            current = await subscriptions.active(s, account_id)
            history = (await subscriptions.history(s, account_id))[:10]
            key_rows = await keys.list_keys(s, account_id)
            entries = await credit.history(s, account_id, limit=20)
            plan_rows = await plans.list_plans(s)
            (month,) = await usage.summarize(s, account_id=account_id, start=midnight_days_ago(29))
        forms = dict(forms or {})
        failed = next(iter(forms), None) if error else None
        forms.setdefault(
            "details", {"name": account.name, "email": account.email or "", "kind": account.kind}
        )
        return page(
            request,
            "console/account.html",
            status,
            account=account,
            members=members,
            subscription=current[0] if current else None,
            plan=current[1] if current else None,
            history=history,
            keys=key_rows,
            entries=entries,
            plans=plan_rows,
            month=month,
            forms=forms,
            failed=failed,
            error=error,
            invalid=invalid,
            created_key=created_key,
            message=notice(request),
        )

    async def account_detail(request: Request, visitor: Visitor) -> Response:
        return await account_page(request, path_id(request, "account_id", "account"))

    async def account_update(request: Request, visitor: Visitor) -> Response:
        account_id = path_id(request, "account_id", "account")
        data = await site.form(request, visitor)
        entered = typed(data, ("name", "email", "kind"))
        try:
            async with site.db.session() as s:
                await accounts.update_account(
                    s,
                    account_id,
                    {"name": entered["name"], "email": entered["email"].strip(), "kind": entered["kind"]},
                )
                await s.commit()
        except GatewayError as err:
            return await account_page(
                request,
                account_id,
                forms={"details": entered},
                error=err.message,
                invalid=err.param,
                status=err.status,
            )
        return RedirectResponse(f"/console/accounts/{account_id}?done=account-saved", status_code=303)

    async def account_credit(request: Request, visitor: Visitor) -> Response:
        """Like ``POST /admin/accounts/{id}/credit``: a top-up, or an adjustment (may be negative)."""
        account_id = path_id(request, "account_id", "account")
        data = await site.form(request, visitor)
        entered = typed(data, ("usd", "kind", "reference"))
        try:
            kind = fields.choice(entered["kind"] or "topup", "kind", ("topup", "adjustment"))
            usd = amount(entered, "usd")
            if usd is None:
                raise InvalidRequest("usd: required", param="usd")
            nanos = credit_nanos(
                {"usd": usd}, usd_field="usd", nanos_field="nanos", allow_negative=kind == "adjustment"
            )
            reference = entered["reference"].strip() or None
            async with site.db.session() as s:
                if kind == "topup":
                    entry_id = await credit.top_up(s, account_id, nanos, reference)
                else:
                    entry_id = await credit.adjust(s, account_id, nanos, reference)
                entry = await credit.get_entry(s, entry_id)
                await s.commit()
        except GatewayError as err:
            return await account_page(
                request,
                account_id,
                forms={"credit": entered},
                error=err.message,
                invalid=err.param,
                status=err.status,
            )
        await site.credited([entry])
        return RedirectResponse(f"/console/accounts/{account_id}?done=credited", status_code=303)

    async def account_subscribe(request: Request, visitor: Visitor) -> Response:
        account_id = path_id(request, "account_id", "account")
        data = await site.form(request, visitor)
        entered = typed(data, ("plan",))
        try:
            plan_id = whole(entered, "plan")
            if plan_id is None:
                raise InvalidRequest("plan: required, choose a plan", param="plan")
            if not 1 <= plan_id <= MAX_INT32:
                raise NotFound(f"No plan with id {plan_id}.")
            async with site.db.session() as s:
                result = await subscriptions.subscribe(s, account_id, plan_id)
                await s.commit()
        except GatewayError as err:
            return await account_page(
                request,
                account_id,
                forms={"subscribe": entered},
                error=err.message,
                invalid=err.param,
                status=err.status,
            )
        await site.credited([result.grant])
        return RedirectResponse(f"/console/accounts/{account_id}?done=subscribed", status_code=303)

    async def account_cancel(request: Request, visitor: Visitor) -> Response:
        account_id = path_id(request, "account_id", "account")
        await site.form(request, visitor)
        try:
            async with site.db.session() as s:
                await subscriptions.cancel(s, account_id)
                await s.commit()
        except GatewayError as err:
            return await account_page(request, account_id, error=err.message, status=err.status)
        return RedirectResponse(f"/console/accounts/{account_id}?done=cancelled", status_code=303)

    async def account_status(request: Request, visitor: Visitor) -> Response:
        account_id = path_id(request, "account_id", "account")
        data = await site.form(request, visitor)
        disabled = text_field(data, "disabled") == "true"
        try:
            async with site.db.session() as s:
                await accounts.set_disabled(s, account_id, disabled)
                await s.commit()
        except GatewayError as err:
            return await account_page(request, account_id, error=err.message, status=err.status)
        done = "disabled" if disabled else "enabled"
        return RedirectResponse(f"/console/accounts/{account_id}?done={done}", status_code=303)

    async def account_member(request: Request, visitor: Visitor) -> Response:
        account_id = path_id(request, "account_id", "account")
        data = await site.form(request, visitor)
        entered = typed(data, ("email", "role", "name"))
        member: dict[str, Any] = {"email": entered["email"].strip(), "role": entered["role"] or "member"}
        if entered["name"].strip():
            member["name"] = entered["name"]
        try:
            async with site.db.session() as s:
                await accounts.add_member(s, account_id, member)
                await s.commit()
        except GatewayError as err:
            return await account_page(
                request,
                account_id,
                forms={"member": entered},
                error=err.message,
                invalid=err.param,
                status=err.status,
            )
        return RedirectResponse(f"/console/accounts/{account_id}?done=member-added", status_code=303)

    async def account_key_create(request: Request, visitor: Visitor) -> Response:
        account_id = path_id(request, "account_id", "account")
        data = await site.form(request, visitor)
        entered = typed(data, ("name",))
        try:
            async with site.db.session() as s:
                raw, row = await keys.create_account_key(
                    s, account_id, {"name": entered["name"].strip() or "default"}
                )
                await s.commit()
        except GatewayError as err:
            return await account_page(
                request,
                account_id,
                forms={"key": entered},
                error=err.message,
                invalid=err.param,
                status=err.status,
            )
        return await account_page(request, account_id, created_key=(raw, row))

    async def account_key_revoke(request: Request, visitor: Visitor) -> Response:
        account_id = path_id(request, "account_id", "account")
        await site.form(request, visitor)
        try:
            key_id = path_id(request, "key_id", "API key")
            async with site.db.session() as s:
                await keys.revoke_key(s, key_id, account_id=account_id)
                await s.commit()
        except GatewayError as err:
            return await account_page(request, account_id, error=err.message, status=err.status)
        return RedirectResponse(f"/console/accounts/{account_id}?done=key-revoked", status_code=303)

    a = "/console/accounts/{account_id:int}"
    table: list[tuple[str, str, Any]] = [
        ("/console/accounts", "GET", accounts_list),
        ("/console/accounts", "POST", accounts_create),
        (a, "GET", account_detail),
        (a, "POST", account_update),
        (f"{a}/credit", "POST", account_credit),
        (f"{a}/subscribe", "POST", account_subscribe),
        (f"{a}/cancel", "POST", account_cancel),
        (f"{a}/status", "POST", account_status),
        (f"{a}/members", "POST", account_member),
        (f"{a}/keys", "POST", account_key_create),
        (f"{a}/keys/{{key_id:int}}/revoke", "POST", account_key_revoke),
    ]
    return [Route(path, site.admin(handler), methods=[method]) for path, method, handler in table]
