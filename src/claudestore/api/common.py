"""What the admin and account apps share: JSON responses, the Anthropic error envelope,
request ids, body and query parsing, and reporting committed credit to the limiter."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from claudestore.accounts import fields
from claudestore.core.errors import (
    ERROR_KINDS,
    GatewayError,
    InternalError,
    InvalidRequest,
    NotFound,
    RequestTooLarge,
)
from claudestore.server.http import new_request_id
from claudestore.storage.billing_models import CreditEntry

log = logging.getLogger("claudestore.api")

#: ``on_credit(account_id, nanos, credit_entry_id)``: called after a commit that changed a balance.
OnCredit = Callable[[int, int, int], Awaitable[None]]
MAX_BODY_BYTES = 1 << 20


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id") or new_request_id())


def error_response(err: GatewayError, rid: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": err.kind, "message": err.message}, "request_id": rid}
    return JSONResponse(body, status_code=err.status)


class RequestIdMiddleware:
    """Gives each request an id (kept if an outer app set ``state.request_id``) and returns it
    as ``request-id`` / ``x-request-id``, like the gateway's own endpoints."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        rid = state.setdefault("request_id", new_request_id())
        extra = [(b"request-id", rid.encode()), (b"x-request-id", rid.encode())]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_id)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc, request_id(request))


def _allowed_methods(request: Request) -> str:
    """Every method the app serves on this path: Starlette's own ``Allow`` names only the first
    route that matched the path, and the apps have one route per method."""
    methods: set[str] = set()
    for route in getattr(request.scope.get("app"), "routes", ()):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    allowed = ""
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path[:200]}."
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        message = f"Method {request.method} is not allowed on {request.url.path[:200]}; use {allowed}."
    else:
        message = str(exc.detail)
    kind = ERROR_KINDS.get(exc.status_code, "invalid_request_error")
    response = error_response(GatewayError(message, status=exc.status_code, kind=kind), request_id(request))
    if allowed:
        response.headers["allow"] = allowed  # required on a 405 (RFC 9110)
    return response


async def _integrity_error(request: Request, exc: Exception) -> Response:
    log.info("integrity error on %s %s: %s", request.method, request.url.path, exc)
    err = GatewayError(
        "The change conflicts with existing data (a duplicate, or a row that is still referenced).",
        status=409,
        kind="conflict_error",
    )
    return error_response(err, request_id(request))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette answers this one from its outermost middleware, outside RequestIdMiddleware.
    rid = request_id(request)
    response = error_response(InternalError("Internal error; it has been logged."), rid)
    response.headers["request-id"] = response.headers["x-request-id"] = rid
    return response


EXCEPTION_HANDLERS: Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    IntegrityError: _integrity_error,
    Exception: _unexpected,
}
MIDDLEWARE = [Middleware(RequestIdMiddleware)]


def checked_ids(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a route handler: an integer path id outside the id columns' range (1 to 2^31 - 1,
    PostgreSQL's INTEGER) answers 404 before it reaches the database, which cannot bind it."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        for name, value in request.path_params.items():
            if isinstance(value, int) and not 1 <= value <= fields.MAX_INT32:
                label = name.removesuffix("_id").replace("_", " ")
                raise NotFound(f"No {label} with id {value}.")
        return await handler(request)

    return guarded


def api_key(request: Request) -> str | None:
    """The key from ``x-api-key`` or ``Authorization: Bearer``, as the gateway reads it."""
    key = request.headers.get("x-api-key")
    if key and key.strip():
        return key.strip()
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``."""
    too_large = RequestTooLarge(f"Body is larger than {MAX_BODY_BYTES} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    # Stop reading as soon as the limit is passed: a chunked upload is never buffered in full.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"Body must be a JSON object, got {type(data).__name__}.")
    return data


def query_int(
    request: Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int = fields.MAX_INT64,
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: expected an integer, got {raw[:50]!r}", param=name) from None
    return fields.integer(value, name, minimum=minimum, maximum=maximum)


def query_id(request: Request, name: str) -> int | None:
    """An id in the query string, at most 2^31 - 1: the id columns are INTEGER on PostgreSQL,
    which cannot bind a larger value (a 400 here rather than a 500 from the database)."""
    return query_int(request, name, maximum=fields.MAX_INT32)


def query_bool(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise InvalidRequest(f"{name}: expected true or false, got {raw[:50]!r}", param=name)


def query_str(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw and "\x00" in raw:  # PostgreSQL's text cannot hold it: the query would fail
        raise InvalidRequest(f"{name}: must not contain the NUL character (U+0000)", param=name)
    return raw if raw else None


async def report_credit(on_credit: OnCredit | None, entries: Iterable[CreditEntry | None]) -> None:
    """Tell the limiter about committed, non-zero credit entries. Failures are logged: the
    money is in the database either way, and the counter is re-seeded from it eventually."""
    if on_credit is None:
        return
    for entry in entries:
        if entry is None or entry.amount_nanos == 0:
            continue
        try:
            await on_credit(entry.account_id, entry.amount_nanos, entry.id)
        except Exception:
            log.exception("on_credit failed for credit entry %s (account %s)", entry.id, entry.account_id)
