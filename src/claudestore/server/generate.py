"""The two generation endpoints: authenticate, route, translate, relay, account.

``handle_generate`` serves ``POST /v1/messages`` and ``POST /v1/chat/completions``
alike; the client's ``Dialect`` decides the wire format on the way in and out, the
provider's decides it upstream. Errors before the first byte are sent as an HTTP error
in the caller's shape; after it, as the format's in-stream error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from claudestore.admission.accounting import Ticket
from claudestore.admission.headers import rate_limit_headers
from claudestore.core.conversation import ChatRequest
from claudestore.core.errors import GatewayError, InvalidRequest, Unsupported
from claudestore.core.stream import BlockDelta
from claudestore.protocol.sse import SSEDecoder
from claudestore.routing.router import Route
from claudestore.server.http import Request, Send, send_bytes, start_stream, wait_disconnect
from claudestore.server.outcome import Outcome
from claudestore.translate import mapping
from claudestore.translate.dialects import DIALECTS, Dialect

if TYPE_CHECKING:
    from claudestore.providers.base import UpstreamResponse
    from claudestore.server.gateway import Gateway


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


async def until_disconnect(req: Request, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work``; cancel it if the client goes away. True when the client went away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect(req.receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        task.result()
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


async def handle_generate(gw: Gateway, req: Request, send: Send, client: Dialect) -> None:
    out = Outcome(req.request_id, client.name)
    headers = gw.response_headers(req)
    ticket: Ticket | None = None
    try:
        key = await gw.auth.authenticate(req.api_key())
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
        upstream = DIALECTS[route.provider.format]
        if upstream is client:
            payload = client.prepare_passthrough(body, creq, route.upstream_model)
        else:
            if creq.untranslatable:
                raise Unsupported(
                    f"{creq.untranslatable[0]} Model {creq.model!r} is served by one in another format."
                )
            payload = upstream.build_request(creq, route.upstream_model, route.model.max_tokens_default)
        max_tokens = creq.max_tokens if creq.max_tokens is not None else route.model.max_tokens_default
        ticket = await gw.accounting.admit(policy, route.public_model, len(raw), max_tokens)
        if ticket.lease is not None:
            rate_limit_headers(ticket.lease, headers)
        exchange = _Exchange(gw, req, send, client, upstream, creq, route, out, headers)
        out.client_disconnected = await until_disconnect(req, exchange.run(orjson.dumps(payload)))
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
            await send_error(send, client, err, headers)
    except Exception:
        gw.log.exception("unhandled error in request %s", req.request_id)
        err = GatewayError("The gateway failed while handling this request; it has been logged.")
        out.status, out.error_kind = 500, err.kind
        if out.first_byte_at is None:
            await send_error(send, client, err, headers)
    finally:
        out.finished_at = time.perf_counter()
        await asyncio.shield(gw.accounting.settle(ticket, out))
        gw.finish(out)


async def send_error(send: Send, dialect: Dialect, err: GatewayError, headers: dict[str, str]) -> None:
    headers = dict(headers)
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
        headers["retry-after-ms"] = str(int(err.retry_after * 1000))
    await send_bytes(send, dialect.error_status(err), dialect.error_body(err, headers["request-id"]), headers)


class _Exchange:
    """One upstream call and its relay to the client."""

    def __init__(
        self,
        gw: Gateway,
        req: Request,
        send: Send,
        client: Dialect,
        upstream: Dialect,
        creq: ChatRequest,
        route: Route,
        out: Outcome,
        headers: dict[str, str],
    ) -> None:
        self.gw, self.req, self.send = gw, req, send
        self.client, self.upstream, self.creq, self.route = client, upstream, creq, route
        self.out, self.headers = out, headers

    async def run(self, payload: bytes) -> None:
        resp = await self.route.provider.open("generate", payload, self.req.headers)
        try:
            if self.creq.stream:
                await self._stream(resp)
            else:
                await self._complete(resp)
        finally:
            resp.close()

    async def _complete(self, resp: UpstreamResponse) -> None:
        body = await resp.json()
        if not isinstance(body, dict):
            raise GatewayError("The upstream answered with JSON that is not an object.", status=502)
        public = self.creq.model
        if self.upstream is self.client:
            self.out.usage = self.client.usage_of(body)
            if self.client.name == "anthropic":
                self.out.stop_reason = body.get("stop_reason")
            else:
                self.out.stop_reason = mapping.stop_reason(_first_finish(body))
            body["model"] = public
            rendered = body
        else:
            cresp = self.upstream.parse_response(body)
            self.out.usage, self.out.stop_reason = cresp.usage, cresp.stop_reason
            rendered = self.client.render_response(cresp, public)
        self.out.first_byte_at = time.perf_counter()
        await send_bytes(self.send, 200, orjson.dumps(rendered), self.headers)

    async def _stream(self, resp: UpstreamResponse) -> None:
        send, client, out = self.send, self.client, self.out
        public = self.creq.model
        sse = SSEDecoder()
        passthrough = self.upstream is self.client
        if passthrough:
            relay = client.relay(self.creq, public, self.route.upstream_model)
            tracker: Any = relay
        else:
            decoder = self.upstream.stream_decoder()
            encoder = client.stream_encoder(self.creq, public)
            tracker = decoder
        translated_deltas = 0
        await start_stream(send, self.headers)
        out.first_byte_at = time.perf_counter()
        failure: tuple[str, str] | None = None
        try:
            try:
                async for chunk in resp.chunks():
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
            except TimeoutError:
                failure = ("timeout_error", "The upstream stream went idle for too long and was closed.")
            except aiohttp.ClientError as exc:
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
