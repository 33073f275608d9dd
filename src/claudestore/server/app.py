"""The ASGI application: a table of routes over plain-ASGI handlers, and the lifespan.

The generation endpoints run without a framework (see ``http``). Paths are matched
exactly; ``?beta=true`` and other query strings are ignored where the SDKs add them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from claudestore.api.account import account_app
from claudestore.api.admin import admin_app
from claudestore.config import Config, load_config
from claudestore.core.errors import GatewayError, NotFound
from claudestore.server.count_tokens import handle_count_tokens
from claudestore.server.gateway import Gateway
from claudestore.server.generate import handle_generate, send_error
from claudestore.server.http import Receive, Request, Scope, Send, send_bytes
from claudestore.server.models import get_model, list_models
from claudestore.translate.dialects import ANTHROPIC, OPENAI, Dialect

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
    await gw.auth.authenticate(req.api_key())
    body = list_models(gw.config.models, req.query)
    await send_bytes(send, 200, orjson.dumps(body), gw.response_headers(req))


async def _model(gw: Gateway, req: Request, send: Send) -> None:
    await gw.auth.authenticate(req.api_key())
    body = get_model(gw.config.models, req.path[len("/v1/models/") :])
    await send_bytes(send, 200, orjson.dumps(body), gw.response_headers(req))


async def _healthz(gw: Gateway, req: Request, send: Send) -> None:
    await send_bytes(send, 200, b'{"status":"ok"}', gw.response_headers(req))


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/messages"): _messages,
    ("POST", "/v1/chat/completions"): _chat,
    ("POST", "/chat/completions"): _chat,
    ("POST", "/v1/messages/count_tokens"): handle_count_tokens,
    ("GET", "/v1/models"): _models,
    ("GET", "/models"): _models,
    ("GET", "/healthz"): _healthz,
}


class GatewayApp:
    """ASGI entry point. ``gateway`` is set by the lifespan (or by ``startup()``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.gateway: Gateway | None = None
        self.admin: Any = None
        self.account: Any = None

    async def startup(self) -> Gateway:
        gw = await Gateway.start(self.config)
        limiter = gw.accounting.limiter

        async def on_credit(account_id: int, nanos: int, credit_id: int) -> None:
            await limiter.credit(account_id, nanos, credit_id)

        self.admin = admin_app(gw.db, admin_key=self.config.admin.resolved_key(), on_credit=on_credit)
        self.account = account_app(gw.db, gw.auth.authenticate, on_credit=on_credit)
        self.gateway = gw
        return gw

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
        if gw is not None and path.startswith(("/admin/", "/v1/account")):
            app = self.admin if path.startswith("/admin/") else self.account
            await app(scope, receive, send)
            if scope["method"] not in ("GET", "HEAD"):
                # A plan, price, key or subscription may have changed: this process sees it at
                # once; other worker processes within accounting.policy_ttl.
                gw.accounting.policies.invalidate()
                gw.accounting.prices.invalidate()
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


def create_app(config: Config | None = None) -> GatewayApp:
    return GatewayApp(config or load_config())


def app_from_env() -> Any:
    """uvicorn factory for worker processes: configuration from ``CLAUDESTORE_CONFIG``."""
    return create_app(load_config(os.environ.get("CLAUDESTORE_CONFIG")))
