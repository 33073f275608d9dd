"""The ASGI application: a table of routes over plain-ASGI handlers, and the lifespan.

The generation endpoints run without a framework (see ``http``). Paths are matched
exactly; ``?beta=true`` and other query strings are ignored where the SDKs add them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from claudestore.accounts.fields import Conflict
from claudestore.accounts.plans import seed_starter_plan
from claudestore.admission.auth_throttle import AuthThrottle
from claudestore.api.account import account_app
from claudestore.api.admin import AdminAuth, admin_app
from claudestore.config import Config, load_config
from claudestore.core.errors import AuthenticationFailed, GatewayError, NotFound
from claudestore.server import raw_head
from claudestore.server.count_tokens import handle_count_tokens
from claudestore.server.gateway import Gateway
from claudestore.server.generate import handle_generate, send_error
from claudestore.server.http import Receive, Request, Scope, Send, send_bytes
from claudestore.server.models import get_model, list_models
from claudestore.translate.dialects import ANTHROPIC, OPENAI, Dialect
from claudestore.web.app import is_web_path, web_app

log = logging.getLogger("claudestore")

Handler = Callable[[Gateway, Request, Send], Awaitable[None]]


def _dialect_for(req: Request) -> Dialect:
    """The error shape for endpoints both SDKs call: Anthropic's SDK always sends anthropic-version."""
    if "anthropic-version" in req.headers or req.path.startswith("/v1/messages"):
        return ANTHROPIC
    return OPENAI


async def _messages(gw: Gateway, req: Request, send: Send) -> None:
    await handle_generate(gw, req, send, ANTHROPIC)


async def _chat(gw: Gateway, req: Request, send: Send) -> None:
    await handle_generate(gw, req, send, OPENAI)


async def _models(gw: Gateway, req: Request, send: Send) -> None:
    await gw.auth.authenticate_client(req.api_key(), req.scope)
    body = list_models(gw.config.models, req.query)
    await send_bytes(send, 200, orjson.dumps(body), gw.response_headers(req))


async def _model(gw: Gateway, req: Request, send: Send) -> None:
    await gw.auth.authenticate_client(req.api_key(), req.scope)
    body = get_model(gw.config.models, req.path[len("/v1/models/") :])
    await send_bytes(send, 200, orjson.dumps(body), gw.response_headers(req))


async def _healthz(gw: Gateway, req: Request, send: Send) -> None:
    await send_bytes(send, 200, b'{"status":"ok"}', gw.response_headers(req))


async def _check(probe: Awaitable[Any]) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await probe
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok"


async def _readyz(gw: Gateway, req: Request, send: Send) -> None:
    """Readiness: the database (and Redis, when configured) answer, and the process is not draining."""

    async def database() -> None:
        async with gw.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    checks = {"database": await _check(database())}
    ping = getattr(gw.accounting.limiter, "ping", None)
    if ping is not None:
        checks["redis"] = await _check(ping())
    ready = not gw.draining and all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else ("draining" if gw.draining else "unavailable"), "checks": checks}
    await send_bytes(send, 200 if ready else 503, orjson.dumps(body), gw.response_headers(req))


METRICS_TOKEN = "Missing or wrong metrics token: send Authorization: Bearer <server.metrics_token>."


def _check_metrics_token(gw: Gateway, req: Request) -> None:
    """With ``server.metrics_token`` set, /metrics needs it as a bearer token (compared in
    constant time; wrong tokens count against the client like any failed authentication)."""
    token = gw.config.server.metrics_token
    if token is None:
        return
    throttle = gw.auth.throttle
    client = throttle.client_of(req.scope) if throttle is not None else None
    if throttle is not None:
        throttle.check(client)
    auth = req.headers.get("authorization", "")
    presented = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if hmac.compare_digest(presented.encode(), token.encode()):
        return
    if throttle is not None and presented:
        throttle.failed(client)
    raise AuthenticationFailed(METRICS_TOKEN, code="invalid_metrics_token")


async def _metrics(gw: Gateway, req: Request, send: Send) -> None:
    if not gw.config.server.metrics:
        raise NotFound("Metrics are switched off (server.metrics: false).")
    try:
        _check_metrics_token(gw, req)
    except GatewayError as err:
        headers = gw.response_headers(req)
        if err.status == 401:
            headers["www-authenticate"] = 'Bearer realm="metrics"'
        await send_error(send, _dialect_for(req), err, headers)
        return
    body = gw.metrics.render(gw.router.deployments())
    await send_bytes(send, 200, body, {}, content_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/messages"): _messages,
    ("POST", "/v1/chat/completions"): _chat,
    ("POST", "/chat/completions"): _chat,
    ("POST", "/v1/messages/count_tokens"): handle_count_tokens,
    ("GET", "/v1/models"): _models,
    ("GET", "/models"): _models,
    ("GET", "/healthz"): _healthz,
    ("GET", "/readyz"): _readyz,
    ("GET", "/metrics"): _metrics,
}

READY_TIMEOUT = 2.0


class GatewayApp:
    """ASGI entry point. ``gateway`` is set by the lifespan (or by ``startup()``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.gateway: Gateway | None = None
        self.admin: Any = None
        self.admin_auth: AdminAuth | None = None
        self.account: Any = None
        self.web: Any = None

    async def startup(self) -> Gateway:
        gw = await Gateway.start(self.config)
        limiter = gw.accounting.limiter

        async def on_credit(account_id: int, nanos: int, credit_id: int) -> None:
            await limiter.credit(account_id, nanos, credit_id)

        # One failed-authentication throttle per process for every credential check (API keys,
        # the admin key, the metrics token): a scanner is slowed down whichever door it tries.
        throttle = gw.auth.throttle = gw.metrics.auth_throttle = AuthThrottle.from_config(self.config.server)
        admin_key = self.config.admin.resolved_key()
        self.admin = admin_app(gw.db, admin_key=admin_key, on_credit=on_credit, throttle=throttle)
        self.admin_auth = AdminAuth(self.admin, gw.db, admin_key, throttle)
        self.account = account_app(
            gw.db, gw.auth.authenticate, on_credit=on_credit, authenticate_client=gw.auth.authenticate_client
        )
        if self.config.web.enabled:
            if self.config.web.seed_free_plan:
                await _seed_starter_plan(gw)
            self.web = web_app(
                gw.db,
                self.config,
                admin_key=admin_key,
                on_credit=on_credit,
                deployments=gw.router.deployments,
                admin_throttle=throttle,
            )
        self.gateway = gw
        _drain_on_signals(gw)
        return gw

    async def _upstreams(self, gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /admin/upstreams``: every deployment's health, load and own limits (admin key)."""
        req = Request(scope, receive)
        headers = gw.response_headers(req)
        try:
            await self.admin_auth.check(req.api_key(), scope)
            if req.method != "GET":
                raise GatewayError(
                    f"Method {req.method} is not allowed on /admin/upstreams; use GET.",
                    status=405,
                    kind="invalid_request_error",
                )
        except GatewayError as err:
            await send_error(send, ANTHROPIC, err, headers)
            return
        now = time.monotonic()
        body = {
            "draining": gw.draining,
            "data": [d.snapshot(now) for d in gw.router.deployments()],
        }
        await send_bytes(send, 200, orjson.dumps(body), headers)

    async def shutdown(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        path: str = scope["path"]
        headers = scope["headers"]
        if (
            len(headers) > 100
            or sum(len(k) + len(v) for k, v in headers) > self.config.server.max_header_bytes
        ):
            # httptools (unlike h11) has no header size limit of its own.
            req = Request(scope, receive)
            size = sum(len(k) + len(v) for k, v in headers)
            err = GatewayError(
                f"Request headers are too large ({len(headers)} headers, {size} bytes); the limit is 100 "
                f"headers and {self.config.server.max_header_bytes} bytes.",
                status=431,
                kind="invalid_request_error",
            )
            await send_error(
                send, _dialect_for(req), err, {"request-id": req.request_id, "x-request-id": req.request_id}
            )
            return
        if gw is not None and path == "/admin/upstreams":
            await self._upstreams(gw, scope, receive, send)
            return
        if gw is not None and path.startswith(("/admin/", "/v1/account")):
            app = self.admin if path.startswith("/admin/") else self.account
            await app(scope, receive, send)
            if scope["method"] not in ("GET", "HEAD"):
                _state_changed(gw)
            return
        if gw is not None and self.web is not None and is_web_path(path):
            await self.web(scope, receive, send)
            if scope["method"] not in ("GET", "HEAD"):
                _state_changed(gw)
            return
        req = Request(scope, receive)
        if gw is None:
            await send_bytes(send, 503, b'{"error":"starting"}', {"request-id": req.request_id})
            return
        handler = ROUTES.get((req.method, req.path))
        try:
            if handler is None:
                handler = self._fallback(req)
            await handler(gw, req, send)
        except GatewayError as err:
            await send_error(send, _dialect_for(req), err, gw.response_headers(req))

    def _fallback(self, req: Request) -> Handler:
        if req.method == "GET" and req.path.startswith(("/v1/models/", "/models/")):
            if req.path.startswith("/models/"):
                req.path = "/v1" + req.path
            return _model
        if any(path == req.path for _, path in ROUTES):
            allowed = ", ".join(m for m, p in ROUTES if p == req.path)
            raise GatewayError(
                f"Method {req.method} is not allowed on {req.path}; use {allowed}.",
                status=405,
                kind="invalid_request_error",
            )
        raise NotFound(f"No route for {req.method} {req.path[:200]}. See the README for the endpoints.")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _state_changed(gw: Gateway) -> None:
    """After an admin, account or web POST: a plan, price, key or subscription may have changed.
    This process sees it at once (a revoked key stops now); other worker processes within
    accounting.policy_ttl and the key cache's ttl (5 s)."""
    gw.accounting.policies.invalidate()
    gw.accounting.prices.invalidate()
    gw.auth.clear()


async def _seed_starter_plan(gw: Gateway) -> None:
    """A fresh install offers a Free plan (web.seed_free_plan); concurrent workers may race."""
    try:
        async with gw.db.session() as session:
            if await seed_starter_plan(session) is not None:
                await session.commit()
                log.info("created the starter plan 'Free' (web.seed_free_plan)")
    except (IntegrityError, Conflict):
        pass  # another worker created it first


def _drain_on_signals(gw: Gateway) -> None:
    """Under uvicorn: SIGTERM / SIGINT also start the gateway's drain (uvicorn itself stops
    accepting and waits for open connections up to ``timeout_graceful_shutdown``)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        owner = getattr(previous, "__self__", None)
        if not callable(previous) or not type(owner).__module__.startswith("uvicorn"):
            continue  # not uvicorn's handler (tests, other servers): leave signals alone

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(gw.begin_drain)
            previous(signum, frame)

        signal.signal(sig, handler)


def create_app(config: Config | None = None) -> GatewayApp:
    return GatewayApp(config or load_config())


def app_from_env() -> Any:
    """uvicorn factory for worker processes: configuration from ``CLAUDESTORE_CONFIG``."""
    if not raw_head.install():
        log.warning("uvicorn %s is not one raw_head was checked with: response heads go through uvicorn's loop",
                    getattr(sys.modules.get("uvicorn"), "__version__", "?"))  # fmt: skip
    return create_app(load_config(os.environ.get("CLAUDESTORE_CONFIG")))
