"""The web store's ASGI app (Starlette), mounted by the gateway for the paths in :data:`PREFIXES`.

Every response carries the security headers below; pages for logged-in visitors are not
cached. Errors render as HTML pages (the API's JSON error shapes stay with the API paths).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from claudestore.admission.auth_throttle import AuthThrottle
from claudestore.api.common import OnCredit
from claudestore.config import Config
from claudestore.core.errors import GatewayError
from claudestore.storage.db import Database
from claudestore.web.pages import auth, console, dashboard, docs, public
from claudestore.web.render import page
from claudestore.web.sessions import Sessions
from claudestore.web.site import Site

log = logging.getLogger("claudestore.web")

#: Paths the gateway hands to the web store (exact "/" or these prefixes).
PREFIXES = ("/plans", "/docs", "/signup", "/login", "/logout", "/dashboard", "/console", "/static/")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def is_web_path(path: str) -> bool:
    return path == "/" or path.startswith(PREFIXES)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control" or static]
                headers.extend(SECURITY_HEADERS)
                headers.append(
                    (b"cache-control", b"public, max-age=3600") if static else (b"cache-control", b"no-store")
                )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _error_page(site: Site) -> Callable[[Request, Exception], Any]:
    async def handler(request: Request, exc: Exception) -> Response:
        if isinstance(exc, GatewayError):
            status, message = exc.status, exc.message
        elif isinstance(exc, HTTPException):
            status = exc.status_code
            message = {
                404: "There is no page at this address.",
                405: "This page does not take that method.",
            }.get(status, str(exc.detail))
        else:
            log.exception("web page %s failed", request.url.path)
            status, message = 500, "Something went wrong on our side. Try again in a moment."
        if not hasattr(request.state, "shared"):
            request.state.shared = {
                "site_title": site.title,
                "visitor": None,
                "csrf": "",
                "base_url": "",
                "signup_open": site.config.web.signup,
            }
        return page(request, "public/error.html", status, code=status, message=message)

    return handler


def web_app(
    db: Database,
    config: Config,
    *,
    admin_key: str | None,
    on_credit: OnCredit | None,
    deployments: Callable[[], Iterable[Any]],
    admin_throttle: AuthThrottle | None = None,
) -> Starlette:
    """``admin_throttle`` is the gateway's failed-authentication throttle: a wrong admin key on
    the console log-in counts there too, so guessing it through the page gains nothing."""
    site = Site(
        db=db,
        config=config,
        sessions=Sessions(db, config.web.session_days, config.web.secure_cookies),
        on_credit=on_credit,
        admin_key=admin_key,
        deployments=deployments,
        login_throttle=AuthThrottle(
            config.web.login_attempts,
            config.web.login_window_seconds,
            trusted_proxies=config.server.trusted_proxies,
        ),
        admin_throttle=admin_throttle,
    )
    routes: list[Any] = []
    for module in (public, auth, dashboard, console, docs):
        routes.extend(module.routes(site))
    routes.append(Mount("/static", app=StaticFiles(packages=[("claudestore.web", "static")]), name="static"))
    handler = _error_page(site)
    app = Starlette(
        routes=routes, exception_handlers={Exception: handler, HTTPException: handler, GatewayError: handler}
    )
    app.add_middleware(SecurityHeaders)
    app.state.site = site
    return app
