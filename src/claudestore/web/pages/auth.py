"""Sign-up, log-in and log-out for customers; the console's log-in with the admin key."""

from __future__ import annotations

import hmac
import math

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from claudestore.accounts import checkout, signup
from claudestore.admission.auth_throttle import AuthThrottle
from claudestore.core.errors import GatewayError
from claudestore.web.render import page
from claudestore.web.sessions import Visitor
from claudestore.web.site import Site, text_field


def safe_next(target: str | None, default: str) -> str:
    """Only local paths: ``//evil.example`` and ``https://...`` are open redirects."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


Counters = list[tuple[AuthThrottle | None, str | None]]


def _wait(counters: Counters) -> float:
    """Seconds until every counter lets this log-in through (0: now)."""
    return max((t.retry_after(key) or 0.0 for t, key in counters if t is not None), default=0.0)


def _failed(counters: Counters) -> None:
    for throttle, key in counters:
        if throttle is not None:
            throttle.failed(key)


def _too_many(request: Request, template: str, wait: float, **context: object) -> Response:
    response = page(
        request,
        template,
        429,
        error=f"Too many failed log-ins. Try again in {math.ceil(wait / 60)} min.",
        **context,
    )
    response.headers["retry-after"] = str(math.ceil(wait))
    return response


def _plan_id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


def routes(site: Site) -> list[Route]:
    throttle = site.login_throttle

    async def signup_form(request: Request, visitor: Visitor | None) -> Response:
        if visitor is not None and visitor.account is not None:
            return RedirectResponse("/dashboard", status_code=303)
        plan = _plan_id(request.query_params.get("plan", ""))
        return page(request, "auth/signup.html", plan_id=plan, email="", name="", error=None)

    async def signup_post(request: Request, visitor: Visitor | None) -> Response:
        if not site.config.web.signup:
            return page(
                request,
                "auth/signup.html",
                403,
                plan_id=None,
                email="",
                name="",
                error="Sign-up is closed on this server; ask its operator for an account.",
            )
        data = await site.form(request, None)
        email, name = text_field(data, "email"), text_field(data, "name")
        plan = _plan_id(text_field(data, "plan_id"))
        response = RedirectResponse("/dashboard/keys" if plan else "/dashboard/plans", status_code=303)
        try:
            async with site.db.session() as s:
                registered = await signup.register(s, email, text_field(data, "password"), name)
                entries = []
                if plan is not None:
                    try:
                        paid = await checkout.choose_plan(s, registered.account.id, plan, site.payments)
                        entries = list(paid.credit_entries)
                    except GatewayError:
                        response = RedirectResponse("/dashboard/plans", status_code=303)  # choose there
                await site.sessions.start(s, response, request, user_id=registered.user.id, admin=False)
                await s.commit()
        except GatewayError as err:
            return page(
                request,
                "auth/signup.html",
                err.status,
                plan_id=plan,
                email=email,
                name=name,
                error=err.message,
            )
        await site.credited(entries)
        return response

    async def login_form(request: Request, visitor: Visitor | None) -> Response:
        target = safe_next(request.query_params.get("next"), "/dashboard")
        return page(request, "auth/login.html", next=target, email="", error=None)

    async def login_post(request: Request, visitor: Visitor | None) -> Response:
        data = await site.form(request, None)
        email = text_field(data, "email").strip().lower()[:320]
        target = safe_next(text_field(data, "next"), "/dashboard")
        counters: Counters = [(throttle, throttle.client_of(request.scope)), (throttle, f"email:{email}")]
        wait = _wait(counters)
        if wait > 0:
            return _too_many(request, "auth/login.html", wait, next=target, email=email)
        async with site.db.session() as s:
            user = await signup.authenticate(s, email, text_field(data, "password"))
            if user is None:
                _failed(counters)
                return page(
                    request,
                    "auth/login.html",
                    401,
                    next=target,
                    email=email,
                    error="Wrong e-mail address or password.",
                )
            default = "/console" if user.is_admin else "/dashboard"
            response = RedirectResponse(safe_next(target, default), status_code=303)
            await site.sessions.start(s, response, request, user_id=user.id, admin=False)
            await s.commit()
        return response

    async def logout(request: Request, visitor: Visitor | None) -> Response:
        await site.form(request, visitor)
        response = RedirectResponse("/", status_code=303)
        await site.sessions.end(request, response)
        return response

    async def console_login_form(request: Request, visitor: Visitor | None) -> Response:
        target = safe_next(request.query_params.get("next"), "/console")
        return page(request, "auth/console_login.html", next=target, error=None)

    async def console_login_post(request: Request, visitor: Visitor | None) -> Response:
        data = await site.form(request, None)
        target = safe_next(text_field(data, "next"), "/console")
        admin = site.admin_throttle
        counters: Counters = [
            (throttle, throttle.client_of(request.scope)),
            (admin, admin.client_of(request.scope) if admin is not None else None),
        ]
        wait = _wait(counters)
        if wait > 0:
            return _too_many(request, "auth/console_login.html", wait, next=target)
        sent = text_field(data, "admin_key").strip()
        if not site.admin_key or not hmac.compare_digest(sent.encode(), site.admin_key.encode()):
            _failed(counters)
            message = (
                "That is not this server's admin key."
                if site.admin_key
                else "No admin key is configured (admin.api_key or CLAUDESTORE_ADMIN_KEY)."
            )
            return page(request, "auth/console_login.html", 401, next=target, error=message)
        response = RedirectResponse(target, status_code=303)
        async with site.db.session() as s:
            await site.sessions.start(s, response, request, user_id=None, admin=True)
            await s.commit()
        return response

    return [
        Route("/signup", site.public(signup_form), methods=["GET"]),
        Route("/signup", site.public(signup_post), methods=["POST"]),
        Route("/login", site.public(login_form), methods=["GET"]),
        Route("/login", site.public(login_post), methods=["POST"]),
        Route("/logout", site.public(logout), methods=["POST"]),
        Route("/console/login", site.public(console_login_form), methods=["GET"]),
        Route("/console/login", site.public(console_login_post), methods=["POST"]),
    ]
