"""The two generation endpoints: authenticate, route, translate, relay, account.

``handle_generate`` serves ``POST /v1/messages`` and ``POST /v1/chat/completions``
alike; the client's ``Dialect`` decides the wire format on the way in and out, the
provider's decides it upstream. Errors before the first byte are sent as an HTTP error
in the caller's shape; after it, as the format's in-stream error event.

Before the first byte a failed upstream attempt is retried, on the same deployment after a
backoff, on another deployment or on a fallback model (``routing.attempts``); after it,
never. A silent stream gets keep-alives every ``server.keepalive_interval`` seconds and is
ended with a ``timeout_error`` event after the upstream's ``timeouts.idle`` (or
``timeouts.total`` for the whole exchange).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from claudestore.admission.accounting import Ticket
from claudestore.admission.headers import rate_limit_headers
from claudestore.core.conversation import ChatRequest
from claudestore.core.errors import (
    GatewayError,
    InvalidRequest,
    Overloaded,
    Unsupported,
    UpstreamTimeout,
)
from claudestore.core.stream import BlockDelta
from claudestore.observability.logs import request_id_var
from claudestore.protocol.sse import SSEDecoder
from claudestore.providers.http import UpstreamConnectionError
from claudestore.routing.attempts import AttemptPlan, retryable
from claudestore.routing.deployments import Deployment
from claudestore.routing.router import Route
from claudestore.server.http import ClientGone, Request, Send, send_bytes, start_stream, wait_disconnect
from claudestore.server.outcome import Outcome
from claudestore.translate import mapping
from claudestore.translate.dialects import DIALECTS, Dialect

if TYPE_CHECKING:
    from claudestore.providers.base import UpstreamResponse
    from claudestore.server.gateway import Gateway


log = logging.getLogger("claudestore.generate")


def dump_json(obj: Any) -> bytes:
    """Serialise a request for the upstream; orjson refuses nesting deeper than 254 levels."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest(f"The request cannot be forwarded: {exc} (JSON nested too deeply?).") from None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {type(body).__name__}.")
    return body


class Drained(Exception):
    """The request was still running at the end of the shutdown drain and was ended."""


async def until_disconnect(
    req: Request,
    work: Coroutine[Any, Any, None],
    registry: set[asyncio.Task[None]] | None = None,
    drained: set[asyncio.Task[None]] | None = None,
) -> bool:
    """Run ``work`` in the current task; cancel it if the client goes away. True when the client
    went away.

    With ``registry`` the current task is listed there while ``work`` runs, so that graceful
    shutdown can cancel it at the drain deadline: a task it adds to ``drained`` before cancelling
    it gets ``Drained`` here instead of the cancellation. One task per request watches for the
    disconnect (uvicorn's ``receive``); ``work`` itself runs in the caller's task."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    active, gone = True, False

    def client_gone(watcher: asyncio.Future[None]) -> None:
        nonlocal gone
        if not active or watcher.cancelled():
            return  # ``work`` was over before this callback ran
        watcher.exception()  # retrieved: a failing ``receive`` also counts as the client gone
        gone = True
        task.cancel()  # delivered inside ``work``: this runs only while ``work`` is suspended

    watcher = loop.create_task(wait_disconnect(req.receive))
    watcher.add_done_callback(client_gone)
    if registry is not None:
        registry.add(task)
    try:
        await work
    except BaseException as exc:
        was_drained = drained is not None and task in drained
        ours = gone + was_drained  # cancellations requested here and by the drain
        remaining = task.cancelling()
        for _ in range(ours):
            remaining = task.uncancel()
        if not ours or remaining > 0 or not isinstance(exc, asyncio.CancelledError):
            raise  # an error, or cancelled from outside as well: the caller's business
        if was_drained:
            raise Drained() from None
        return True
    else:
        # ``work`` returned although it may have been cancelled (and swallowed it): withdraw the
        # cancellations requested here; the client being gone is reported all the same.
        for _ in range(gone + (drained is not None and task in drained)):
            task.uncancel()
        return gone
    finally:
        active = False
        watcher.cancel()
        if registry is not None:
            registry.discard(task)
        if drained is not None:
            drained.discard(task)


SHUTTING_DOWN = "The gateway is shutting down; retry the request."


async def handle_generate(gw: Gateway, req: Request, send: Send, client: Dialect) -> None:
    out = Outcome(req.request_id, client.name)
    request_id_var.set(req.request_id)
    headers = gw.response_headers(req)
    limit_headers = b""  # the rate-limit headers (encoded header lines), once admitted
    ticket: Ticket | None = None
    metrics = gw.metrics
    metrics.requests_in_flight += 1
    try:
        if gw.draining:
            raise Overloaded(SHUTTING_DOWN, retry_after=1)
        key = await gw.auth.authenticate_client(req.api_key(), req.scope)
        out.key_id = key.id
        policy = await gw.accounting.policy(key)
        out.account_id = policy.account_id
        raw = await req.body(gw.config.server.max_body_bytes)
        body = parse_json_object(raw)
        creq = client.parse_request(body)
        route = gw.router.resolve(creq.model)
        out.model, out.upstream, out.upstream_model = (
            route.public_model,
            route.provider.name,
            route.upstream_model,
        )
        out.streamed = creq.stream
        # A request that only its own format can carry may go to deployments of that format only.
        usable = (lambda d: DIALECTS[d.format] is client) if creq.untranslatable else None
        plan = AttemptPlan(gw.router.chain(route), gw.config.routing, usable)
        if not plan.servable:
            raise Unsupported(
                f"{creq.untranslatable[0]} Model {creq.model!r} is served by one in another format."
            )
        max_tokens = creq.max_tokens if creq.max_tokens is not None else route.model.max_tokens_default
        ticket = gw.accounting.admit_now(policy, route.public_model, len(raw), max_tokens)
        if ticket is None:  # the price table or a limiter elsewhere has to be awaited
            ticket = await gw.accounting.admit(policy, route.public_model, len(raw), max_tokens)
        if ticket.lease is not None:
            limit_headers = rate_limit_headers(ticket.lease, client.name)
        exchange = _Exchange(gw, req, send, client, creq, body, route, plan, out, headers, limit_headers)
        try:
            out.client_disconnected = await until_disconnect(req, exchange.run(), gw.tasks, gw.drained)
        except Drained:
            out.status, out.error_kind = 503, "overloaded_error"
            if out.first_byte_at is None:
                await send_error(
                    send, client, Overloaded(SHUTTING_DOWN, retry_after=1), headers, limit_headers
                )
            elif creq.stream:
                tail = client.stream_error("overloaded_error", SHUTTING_DOWN)
                with contextlib.suppress(Exception):  # e.g. the stream had just been completed
                    await send({"type": "http.response.body", "body": tail, "more_body": False})
        if out.client_disconnected:
            out.status, out.error_kind = 499, "client_disconnected"
        if out.client_disconnected or out.error_kind is not None:
            # The stream ended before the upstream's final usage report (client gone: the upstream
            # was cancelled; or the upstream failed): what it generated is at least one token per
            # content delta relayed (exact for one-token deltas, never more than was generated).
            out.usage.output_tokens = max(out.usage.output_tokens, out.relayed_deltas)
    except GatewayError as err:
        out.status, out.error_kind = err.status, err.kind
        if out.first_byte_at is None:
            await send_error(send, client, err, headers, limit_headers)
    except ClientGone:  # the client left before its body was complete
        out.status, out.error_kind, out.client_disconnected = 499, "client_disconnected", True
    except Exception:
        gw.log.exception("unhandled error in request %s", req.request_id)
        err = GatewayError("The gateway failed while handling this request; it has been logged.")
        out.status, out.error_kind = 500, err.kind
        if out.first_byte_at is None:
            await send_error(send, client, err, headers, limit_headers)
    finally:
        metrics.requests_in_flight -= 1
        out.finished_at = time.perf_counter()
        if not gw.accounting.settle_now(ticket, out):  # usually settled here, without a task
            await asyncio.shield(gw.accounting.settle(ticket, out))
        gw.finish(out)


async def send_error(
    send: Send,
    dialect: Dialect,
    err: GatewayError,
    headers: dict[str, str],
    lines: bytes = b"",
) -> None:
    headers = dict(headers)
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
        headers["retry-after-ms"] = str(int(err.retry_after * 1000))
    body = dialect.error_body(err, headers["request-id"])
    await send_bytes(send, dialect.error_status(err), body, headers, lines=lines)


# 4xx answers that count against the deployment's health (not retried: see routing.attempts):
# its credentials or account (401, 402, 403), or "not now" (408, 409, 429).
DEPLOYMENT_FAULTS = frozenset({401, 402, 403, 408, 409, 429})

# Keep-alives both SDKs skip: Anthropic's own ping event; an SSE comment for OpenAI (wire.md C).
KEEPALIVE = {"anthropic": b'event: ping\ndata: {"type": "ping"}\n\n', "openai": b": ping\n\n"}


class _Exchange:
    """The upstream attempts of one request (retries, other deployments, fallbacks) and the
    relay of the one that answered to the client."""

    def __init__(
        self,
        gw: Gateway,
        req: Request,
        send: Send,
        client: Dialect,
        creq: ChatRequest,
        body: dict[str, Any],
        route: Route,
        plan: AttemptPlan,
        out: Outcome,
        headers: dict[str, str],
        limit_headers: bytes,
    ) -> None:
        self.gw, self.req, self.send = gw, req, send
        self.client, self.creq, self.body, self.route, self.plan = client, creq, body, route, plan
        self.out, self.headers, self.limit_headers = out, headers, limit_headers
        self._payloads: dict[tuple[str, str, int], bytes] = {}

    def _payload(self, route: Route, dep: Deployment) -> tuple[Dialect, bytes]:
        """The request body for ``dep``, built once per format and upstream model."""
        upstream = DIALECTS[dep.format]
        passthrough = upstream is self.client
        default_max = 0 if passthrough else route.model.max_tokens_default
        key = (dep.format, dep.upstream_model, default_max)
        payload = self._payloads.get(key)
        if payload is None:
            if passthrough:
                built = self.client.prepare_passthrough(self.body, self.creq, dep.upstream_model)
            else:
                built = upstream.build_request(self.creq, dep.upstream_model, default_max)
            payload = self._payloads[key] = dump_json(built)
        return upstream, payload

    async def run(self) -> None:
        plan, out, metrics = self.plan, self.out, self.gw.metrics
        step = plan.next()
        last: GatewayError | None = None
        while step is not None:
            dep = step.deployment
            if step.kind == "fallback":
                metrics.fallback(self.route.public_model, step.route.public_model)
                log.info(
                    "falling back to %s", step.route.public_model, extra={"model": self.route.public_model}
                )
            if step.wait > 0:
                await asyncio.sleep(step.wait)
            upstream, payload = self._payload(step.route, dep)
            out.upstream, out.upstream_model = dep.provider.name, dep.upstream_model
            out.attempts = plan.attempts
            err = await self._attempt(dep, upstream, payload)
            if err is None:
                return
            if out.first_byte_at is not None or not retryable(err):
                raise err
            last = err
            step = plan.next(dep, err)
            if step is not None:
                reason = "timeout" if err.kind == "timeout_error" else str(err.status)
                metrics.retry(self.route.public_model, dep, reason)
                log.info(
                    "upstream attempt failed (%s); next: %s in %.2f s",
                    reason,
                    step.deployment.name,
                    step.wait,
                    extra={"deployment": dep.name, "next_attempt": plan.attempts},
                )
        if last is None:  # pragma: no cover - plan.next() always offers a first attempt when servable
            raise GatewayError("No deployment could take the request.", status=503, kind="overloaded_error")
        raise last

    async def _attempt(self, dep: Deployment, upstream: Dialect, payload: bytes) -> GatewayError | None:
        """One upstream attempt; the error when it failed before the first byte reached the client."""
        began = time.monotonic()
        dep.started(began)
        started = asyncio.get_running_loop().time()
        resp: UpstreamResponse | None = None
        try:
            try:
                resp = await dep.provider.open("generate", payload, self.req.headers)
            except GatewayError as err:
                self._failed(dep, err.status, err.retry_after, err.message)
                return err
            # The upstream accepted the request: that ends a half-open probe (a stream may run long).
            dep.health.success(began)
            if self.creq.stream:
                await self._stream(resp, upstream, dep, started)
                if self.out.error_kind is None:
                    self.gw.metrics.attempt(dep, "ok")
                else:  # the stream failed after the first byte: nothing to retry, but it counts
                    self._failed(dep, None, None, f"mid-stream: {self.out.error_kind}")
                return None
            try:
                await self._complete(resp, upstream, dep, started)
            except GatewayError as err:
                self._failed(dep, err.status, err.retry_after, err.message)
                return err
            self.gw.metrics.attempt(dep, "ok")
            return None
        except asyncio.CancelledError:
            dep.health.neutral()
            self.gw.metrics.attempt(dep, "cancelled")
            raise
        finally:
            if resp is not None:
                resp.stop_reading()
                resp.close()
            u = self.out.usage if resp is not None else None
            tokens = u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens if u else 0
            dep.finished(time.monotonic(), tokens)

    def _failed(self, dep: Deployment, status: int | None, retry_after: float | None, message: str) -> None:
        metrics = self.gw.metrics
        metrics.attempt(dep, "error" if status is None else str(status))
        if status is not None and status < 500 and status not in DEPLOYMENT_FAULTS:
            dep.health.neutral()  # the client's own error says nothing about the deployment
            return
        cfg = self.gw.config.routing
        if dep.health.failure(
            time.monotonic(),
            status=status,
            retry_after=retry_after,
            message=message,
            threshold=cfg.cooldown_failures,
            cooldown=cfg.cooldown_seconds,
        ):
            metrics.cooldown(dep)
            log.warning(
                "deployment %s cooling down for %.1f s after: %s",
                dep.key,
                (dep.health.cooldown_until or 0) - time.monotonic(),
                message[:200],
                extra={"deployment": dep.name},
            )

    async def _complete(
        self, resp: UpstreamResponse, upstream: Dialect, dep: Deployment, started: float
    ) -> None:
        total = dep.provider.config.timeouts.total
        if total is None:
            body = await resp.json()
        else:
            try:
                async with asyncio.timeout_at(started + total):
                    body = await resp.json()
            except TimeoutError:
                raise UpstreamTimeout(f"The upstream did not finish within {total:g} s.") from None
        if not isinstance(body, dict):
            raise GatewayError("The upstream answered with JSON that is not an object.", status=502)
        public = self.creq.model
        if upstream is self.client:
            self.out.usage = self.client.usage_of(body)
            if self.client.name == "anthropic":
                self.out.stop_reason = body.get("stop_reason")
            else:
                self.out.stop_reason = mapping.stop_reason(_first_finish(body))
            body["model"] = public
            rendered = body
        else:
            cresp = upstream.parse_response(body)
            self.out.usage, self.out.stop_reason = cresp.usage, cresp.stop_reason
            rendered = self.client.render_response(cresp, public)
        self.out.first_byte_at = time.perf_counter()
        await send_bytes(self.send, 200, orjson.dumps(rendered), self.headers, lines=self.limit_headers)

    async def _stream(
        self, resp: UpstreamResponse, upstream: Dialect, dep: Deployment, started: float
    ) -> None:
        send, client, out = self.send, self.client, self.out
        public = self.creq.model
        sse = SSEDecoder()
        passthrough = upstream is client
        if passthrough:
            relay = client.relay(self.creq, public, dep.upstream_model)
            tracker: Any = relay
        else:
            decoder = upstream.stream_decoder()
            encoder = client.stream_encoder(self.creq, public)
            tracker = decoder
        translated_deltas = 0
        timeouts = dep.provider.config.timeouts
        idle = timeouts.idle
        every = self.gw.config.server.keepalive_interval
        keepalive = {"type": "http.response.body", "body": KEEPALIVE[client.name], "more_body": True}
        clock = asyncio.get_running_loop().time
        await start_stream(send, self.headers, self.limit_headers)
        out.first_byte_at = time.perf_counter()
        metrics = self.gw.metrics
        metrics.streams_in_flight += 1
        now = clock()
        end_by = started + timeouts.total if timeouts.total is not None else float("inf")
        idle_by = now + idle
        ping_by = now + every if every > 0 else float("inf")
        failure: tuple[str, str] | None = None
        try:
            try:
                while True:
                    try:
                        chunk = await resp.read(min(idle_by, ping_by, end_by))
                    except TimeoutError:
                        now = clock()
                        if now >= end_by:
                            failure = ("timeout_error", f"The upstream stream exceeded {timeouts.total:g} s.")
                            break
                        if now >= idle_by:
                            failure = (
                                "timeout_error",
                                f"The upstream stream went idle for more than {idle:g} s and was closed.",
                            )
                            break
                        await send(keepalive)
                        ping_by = now + every
                        continue
                    if not chunk:
                        break
                    now = clock()
                    idle_by = now + idle
                    pieces: list[bytes] = []
                    for frame in sse.feed(chunk):
                        if passthrough:
                            piece = relay.feed(frame)
                            if piece:
                                pieces.append(piece)
                        else:
                            for ev in decoder.feed(frame):
                                if type(ev) is BlockDelta and ev.kind != "signature":
                                    translated_deltas += 1
                                piece = encoder.encode(ev)
                                if piece:
                                    pieces.append(piece)
                    if pieces:
                        await send(
                            {"type": "http.response.body", "body": b"".join(pieces), "more_body": True}
                        )
                        ping_by = now + every
                        if out.first_token_at is None and (
                            relay.deltas if passthrough else translated_deltas
                        ):
                            out.first_token_at = time.perf_counter()
            except UpstreamConnectionError as exc:
                # A break after the answer is complete (only [DONE] / message_stop missing) is no failure.
                if not (relay.complete if passthrough else tracker.stop_reason is not None):
                    failure = ("api_error", f"The upstream connection broke mid-stream: {exc}")
            tail: list[bytes] = []
            if failure is None:
                if passthrough:
                    tail.extend(relay.feed(f) for f in sse.flush())
                    if not relay.complete:
                        failure = ("api_error", "The upstream closed the stream before it was complete.")
                else:
                    for ev in [e for f in sse.flush() for e in decoder.feed(f)] + decoder.finish():
                        tail.append(encoder.encode(ev))
            if failure is not None:
                tail.append(client.stream_error(*failure))
            if failure is not None or tracker.error is not None:
                out.status = 502
                out.error_kind = failure[0] if failure is not None else tracker.error.kind
            await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})
        finally:
            metrics.streams_in_flight -= 1
            # Also when the client went away and this task was cancelled: bill what was reported,
            # and at least one output token per content delta that was relayed.
            out.usage = tracker.usage
            out.stop_reason = tracker.stop_reason
            out.relayed_deltas = relay.deltas if passthrough else translated_deltas


def _first_finish(body: dict[str, Any]) -> str | None:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0].get("finish_reason")
    return None
