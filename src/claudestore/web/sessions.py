"""Browser sessions: an HTTP-only cookie holding a random token, a row per session in the database.

- The cookie is ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and ``Secure`` whenever the page came
  over HTTPS (or ``web.secure_cookies`` says so); its value is 32 random bytes. The database keeps
  only the token's SHA-256, so sessions survive restarts, work across replicas sharing the
  database, and end at once on log-out everywhere.
- CSRF: every state-changing form carries ``csrf_token``. Logged in, it must equal the session's
  token; before log-in (the sign-up and log-in forms) it must equal a separate random cookie
  (double submit). On top, a request whose ``Origin`` header names another site is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from claudestore.accounts import signup
from claudestore.storage.billing_models import Account, User
from claudestore.storage.db import Database
from claudestore.storage.models import utcnow
from claudestore.storage.web_models import WebSession

SESSION_COOKIE = "cs_session"
CSRF_COOKIE = "cs_csrf"


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who is logged in: a customer (with their account), an admin user, or the operator by admin key."""

    session: WebSession
    user: User | None
    account: Account | None

    @property
    def is_admin(self) -> bool:
        return self.session.admin or bool(self.user and self.user.is_admin)

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    @property
    def label(self) -> str:
        return self.user.email if self.user else "operator"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def secure(request: Request, setting: bool | None) -> bool:
    if setting is not None:
        return setting
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


class Sessions:
    def __init__(self, db: Database, days: float, secure_setting: bool | None) -> None:
        self.db = db
        self.lifetime = timedelta(days=days)
        self.secure_setting = secure_setting

    async def start(
        self, session: AsyncSession, response: Response, request: Request, *, user_id: int | None, admin: bool
    ) -> WebSession:
        """Log in: a new session row (never reusing a token the browser had: no fixation)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        row = WebSession(
            token_hash=_digest(token),
            user_id=user_id,
            admin=admin,
            csrf_token=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + self.lifetime,
        )
        session.add(row)
        await session.execute(delete(WebSession).where(WebSession.expires_at < now))
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(self.lifetime.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=secure(request, self.secure_setting),
            path="/",
        )
        return row

    async def current(self, request: Request) -> Visitor | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 100:
            return None
        async with self.db.session() as s:
            row = await s.get(WebSession, _digest(token))
            if row is None or row.expires_at <= utcnow():
                return None
            user = await s.get(User, row.user_id) if row.user_id is not None else None
            if row.user_id is not None and user is None:
                return None
            account = await signup.primary_account(s, user.id) if user is not None else None
            if row.expires_at - utcnow() < self.lifetime / 2:  # sliding expiry, at most one write a week
                row.expires_at = utcnow() + self.lifetime
                await s.commit()
            return Visitor(row, user, account)

    async def end(self, request: Request, response: Response) -> None:
        token = request.cookies.get(SESSION_COOKIE)
        if token and len(token) <= 100:
            async with self.db.session() as s:
                await s.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))
                await s.commit()
        response.delete_cookie(SESSION_COOKIE, path="/")

    async def end_all(self, session: AsyncSession, user_id: int) -> None:
        await session.execute(delete(WebSession).where(WebSession.user_id == user_id))


def anonymous_csrf(request: Request) -> str:
    """The double-submit token for forms shown before log-in (read from, or new for, the cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum():
        return token
    token = request.state.new_csrf = secrets.token_urlsafe(24)
    return token


def set_anonymous_csrf(request: Request, response: Response, setting: bool | None) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, httponly=True, samesite="strict", secure=secure(request, setting), path="/"
        )


def same_origin(request: Request) -> bool:
    """False when the browser says the form came from another site."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def csrf_ok(expected: str | None, sent: object) -> bool:
    return (
        bool(expected)
        and isinstance(sent, str)
        and hmac.compare_digest(expected.encode(), sent.encode()[:200])
    )
