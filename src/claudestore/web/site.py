"""What every page handler needs: the database, settings, sessions, and the guards around handlers.

Handlers are wrapped by one of three guards: :meth:`Site.public` (anyone; the visitor is
loaded when logged in), :meth:`Site.customer` (a logged-in customer with an account, else a
redirect to the log-in page) and :meth:`Site.admin` (the console; else its log-in page). Every
guard puts the shared template context on ``request.state.shared``. POST handlers read their
form with :meth:`Site.form`, which enforces the size limit, the same-origin rule and CSRF.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from claudestore.accounts.payments import CreditsOnlyProvider, PaymentProvider
from claudestore.admission.auth_throttle import AuthThrottle
from claudestore.api.common import OnCredit, report_credit
from claudestore.config import Config
from claudestore.core.errors import GatewayError
from claudestore.storage.billing_models import CreditEntry
from claudestore.storage.db import Database
from claudestore.web.sessions import (
    Sessions,
    Visitor,
    anonymous_csrf,
    csrf_ok,
    same_origin,
    set_anonymous_csrf,
)

MAX_FORM_BYTES = 64 * 1024

Page = Callable[[Request, Any], Awaitable[Response]]


class FormRejected(GatewayError):
    status, kind = 403, "permission_error"


@dataclass
class Site:
    db: Database
    config: Config
    sessions: Sessions
    on_credit: OnCredit | None = None
    admin_key: str | None = None
    deployments: Callable[[], Iterable[Any]] = field(default=lambda: ())
    payments: PaymentProvider = field(default_factory=CreditsOnlyProvider)
    # Failed log-ins per client address and per e-mail address (web.login_attempts per window).
    login_throttle: AuthThrottle = field(default_factory=lambda: AuthThrottle(10, 300.0))
    admin_throttle: AuthThrottle | None = None  # the gateway's, for the admin key

    @property
    def title(self) -> str:
        return self.config.web.title

    def base_url(self, request: Request) -> str:
        if self.config.web.public_url:
            return self.config.web.public_url.rstrip("/")
        proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host") or request.headers.get("host") or request.url.netloc
        return f"{proto}://{host.split(',')[0].strip()}"

    def _share(self, request: Request, visitor: Visitor | None) -> None:
        request.state.shared = {
            "site_title": self.title,
            "visitor": visitor,
            "csrf": visitor.csrf if visitor is not None else anonymous_csrf(request),
            "base_url": self.base_url(request),
            "signup_open": self.config.web.signup,
        }

    def finish(self, request: Request, response: Response) -> Response:
        set_anonymous_csrf(request, response, self.config.web.secure_cookies)
        return response

    def public(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            visitor = await self.sessions.current(request)
            self._share(request, visitor)
            return self.finish(request, await handler(request, visitor))

        return guarded

    def customer(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            visitor = await self.sessions.current(request)
            if visitor is None or visitor.account is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if visitor is not None and visitor.is_admin:
                    return RedirectResponse("/console", status_code=303)
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            self._share(request, visitor)
            return self.finish(request, await handler(request, visitor))

        return guarded

    def admin(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            visitor = await self.sessions.current(request)
            if visitor is None or not visitor.is_admin:
                return RedirectResponse(f"/console/login?next={quote(request.url.path)}", status_code=303)
            self._share(request, visitor)
            return self.finish(request, await handler(request, visitor))

        return guarded

    async def form(self, request: Request, visitor: Visitor | None) -> FormData:
        """The posted form, after the size, origin and CSRF checks (``FormRejected`` otherwise)."""
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise FormRejected("The form is too large or has no Content-Length.", status=413)
        if not same_origin(request):
            raise FormRejected("This form was sent from another site; open the page here and try again.")
        data = await request.form(max_files=0, max_fields=100)
        expected = visitor.csrf if visitor is not None else request.cookies.get("cs_csrf")
        if not csrf_ok(expected, data.get("csrf_token")):
            raise FormRejected(
                "The form expired or came from elsewhere (bad CSRF token). Reload the page and try again."
            )
        return data

    async def credited(self, entries: Iterable[CreditEntry | None]) -> None:
        await report_credit(self.on_credit, entries)


def text_field(data: FormData, name: str) -> str:
    value = data.get(name, "")
    return value if isinstance(value, str) else ""
