"""The fake upstream's aiohttp app: Anthropic Messages and OpenAI Chat Completions on one port.

Endpoints and knobs: README.md here. Sleeps poll the connection, so a client that goes away ends
its handler within 50 ms even on a runner without ``handler_cancellation`` (ours enable it).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any, Final

import orjson
from aiohttp import web

from . import anthropic_wire as aw
from . import openai_wire as ow
from .knobs import Format, KnobError, Knobs, last_user_text, parse_knobs
from .script import build_script, count_input_tokens

__all__ = ["create_app", "run", "start_fake_upstream"]

_JSON: Final = "application/json"
_SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_BAD: Final = object()
_BAD_KEY: Final = {"anthropic": "invalid x-api-key", "openai": "Incorrect API key provided."}


class FakeState:
    """Per-app state: the expected key, the id counter and the request log."""

    __slots__ = ("api_key", "counter", "log")

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key
        self.counter = itertools.count(1)
        self.log: deque[tuple[str, tuple[tuple[bytes, bytes], ...], Any]] = deque(maxlen=200)

    def authorized(self, request: web.Request, x_api_key: bool) -> bool:
        if self.api_key is None:
            return True
        headers = request.headers
        if x_api_key and headers.get("x-api-key") == self.api_key:
            return True
        auth = headers.get("Authorization", "")
        return auth[:7].lower() == "bearer " and auth[7:].strip() == self.api_key


STATE: Final = web.AppKey("fake_upstream_state", FakeState)


class _Reject(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


async def _pause(request: web.Request, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the client has gone away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        left = deadline - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(left, 0.05))


async def _read(request: web.Request, state: FakeState) -> Any:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = _BAD
    state.log.append((request.path, request.raw_headers, None if body is _BAD else body))
    return body


def _int_or_none(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (type(value) is not int or value < 0):
        raise _Reject(400, f"{key}: Input should be a non-negative integer", key)
    return value


def _common(body: Any, fmt: Format, request: web.Request) -> tuple[dict[str, Any], Knobs]:
    if body is _BAD or not isinstance(body, dict):
        raise _Reject(400, "The request body is not valid JSON (fake upstream)")
    if not isinstance(body.get("model"), str):
        raise _Reject(400, "model: Field required", "model")
    if not isinstance(body.get("messages"), list):
        raise _Reject(400, "messages: Field required", "messages")
    try:
        knobs = parse_knobs(last_user_text(body, fmt), request.headers.get("x-fake"))
    except KnobError as exc:
        raise _Reject(400, str(exc)) from None
    return body, knobs


async def _ttfb_and_status(request: web.Request, knobs: Knobs) -> None:
    if knobs.ttfb_ms and not await _pause(request, knobs.ttfb_ms / 1000):
        raise _Reject(499, "client closed request")  # written to a dead connection: dropped
    if knobs.status is not None:
        raise _Reject(knobs.status, "")


def _error(fmt: Format, exc: _Reject, rid: str, knobs: Knobs | None = None) -> web.Response:
    if fmt == "anthropic":
        headers = {"Content-Type": _JSON, "request-id": rid}
        body = aw.error_body(exc.status, rid, exc.message)
    else:
        headers = {"Content-Type": _JSON, "x-request-id": rid}
        body = ow.error_body(exc.status, exc.message, exc.param)
    if knobs is not None and knobs.retry_after is not None:
        headers["retry-after"] = knobs.retry_after
    return web.Response(status=exc.status, body=body, headers=headers)


async def _send_stream(
    request: web.Request, frames: list[bytes], knobs: Knobs, headers: dict[str, str], error: bytes
) -> web.StreamResponse:
    if knobs.streams_plainly:
        return web.Response(body=b"".join(frames), headers=headers)
    limit, action = len(frames), "end"
    for name, after in (("error", knobs.error_after), ("stall", knobs.stall_after), ("cut", knobs.cut_after)):
        if after is not None and after < limit:
            limit, action = after, name
    delay = knobs.delay_ms / 1000
    sent = [*frames[:limit], error] if action == "error" else frames[:limit]
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    try:
        for i, frame in enumerate(sent):
            if i and delay and not await _pause(request, delay):
                return resp
            await resp.write(frame)
        if action in ("stall", "cut"):
            if action == "stall":
                await _pause(request, knobs.stall_ms / 1000)
            if request.transport is not None:
                request.transport.close()  # no terminating chunk: the client sees a broken body
            return resp
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


def _options(body: dict[str, Any], fmt: Format) -> tuple[int | None, list[str], bool]:
    """(max_tokens, stop sequences, include_usage) of a generation request."""
    if fmt == "anthropic":
        max_tokens = _int_or_none(body, "max_tokens")
        if max_tokens is None:
            raise _Reject(400, "max_tokens: Field required", "max_tokens")
        stops = body.get("stop_sequences") or []
    else:
        max_tokens = _int_or_none(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = _int_or_none(body, "max_tokens")
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        key = "stop_sequences" if fmt == "anthropic" else "stop"
        raise _Reject(400, f"{key}: Input should be a list of strings", key)
    options = body.get("stream_options")
    return max_tokens, stops, isinstance(options, dict) and options.get("include_usage") is True


async def _post(request: web.Request, fmt: Format, count_only: bool = False) -> web.StreamResponse:
    state = request.app[STATE]
    seq = next(state.counter)
    rid = f"req_fake{seq:06d}"
    body = await _read(request, state)
    knobs: Knobs | None = None
    try:
        if not state.authorized(request, fmt == "anthropic"):
            raise _Reject(401, _BAD_KEY[fmt])
        body, knobs = _common(body, fmt, request)
        max_tokens, stops, include_usage = (None, [], False) if count_only else _options(body, fmt)
        await _ttfb_and_status(request, knobs)
    except _Reject as exc:
        return _error(fmt, exc, rid, knobs)
    if count_only:
        payload = orjson.dumps({"input_tokens": count_input_tokens(body, "anthropic")})
        return web.Response(body=payload, headers={"Content-Type": _JSON, "request-id": rid})
    script = build_script(body, fmt, knobs, max_tokens=max_tokens, stop_sequences=stops)
    stream, model = body.get("stream") is True, body["model"]
    if fmt == "anthropic":
        msg_id = f"msg_fake{seq:06d}"
        if not stream:
            payload = aw.message_body(script, msg_id=msg_id, model=model, seq=seq)
            return web.Response(body=payload, headers={"Content-Type": _JSON, "request-id": rid})
        frames = aw.stream_frames(script, msg_id=msg_id, model=model, seq=seq)
        return await _send_stream(
            request, frames, knobs, {**_SSE_HEADERS, "request-id": rid}, aw.STREAM_ERROR
        )
    cid = f"chatcmpl-fake{seq:06d}"
    if not stream:
        payload = ow.completion_body(script, cid=cid, model=model, seq=seq)
        return web.Response(body=payload, headers={"Content-Type": _JSON, "x-request-id": rid})
    frames = ow.stream_frames(script, cid=cid, model=model, seq=seq, include_usage=include_usage)
    return await _send_stream(request, frames, knobs, {**_SSE_HEADERS, "x-request-id": rid}, ow.STREAM_ERROR)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _post(request, "anthropic")


async def count_tokens(request: web.Request) -> web.StreamResponse:
    return await _post(request, "anthropic", count_only=True)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _post(request, "openai")


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.log.append((request.path, request.raw_headers, None))
    rid = f"req_fake{next(state.counter):06d}"
    fmt: Format = "anthropic" if "anthropic-version" in request.headers else "openai"
    if not state.authorized(request, fmt == "anthropic"):
        return _error(fmt, _Reject(401, _BAD_KEY[fmt]), rid)
    model_id = request.match_info.get("model_id")
    wire = aw if fmt == "anthropic" else ow
    payload = orjson.dumps(wire.model_body(model_id)) if model_id else wire.MODELS_BODY
    header = "request-id" if fmt == "anthropic" else "x-request-id"
    return web.Response(body=payload, headers={"Content-Type": _JSON, header: rid})


def _headers(raw: tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("utf-8", "replace") for k, v in raw}


async def recorded(request: web.Request) -> web.Response:
    log = request.app[STATE].log
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 20
    items = list(log)[-limit:] if limit > 0 else []
    data = [{"path": p, "headers": _headers(h), "body": b} for p, h, b in items]
    return web.Response(body=orjson.dumps(data), headers={"Content-Type": _JSON})


async def clear_recorded(request: web.Request) -> web.Response:
    request.app[STATE].log.clear()
    return web.Response(status=204)


def create_app(*, api_key: str | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = FakeState(api_key)
    app.router.add_routes(
        [
            web.post("/v1/messages", messages),
            web.post("/v1/messages/count_tokens", count_tokens),
            web.post("/v1/chat/completions", chat_completions),
            web.get("/v1/models", models),
            web.get("/v1/models/{model_id}", models),
            web.get("/_fake/requests", recorded),
            web.delete("/_fake/requests", clear_recorded),
        ]
    )
    return app


async def start_fake_upstream(
    host: str = "127.0.0.1", port: int = 0, api_key: str | None = None
) -> tuple[web.AppRunner, int]:
    """Start the app in the running loop; returns the runner (``await runner.cleanup()``) and port."""
    app = create_app(api_key=api_key)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, int(runner.addresses[0][1])


def run(host: str = "127.0.0.1", port: int = 8099, api_key: str | None = None) -> None:
    """Serve until interrupted (blocking), on uvloop when it is installed."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    app = create_app(api_key=api_key)
    web.run_app(
        app, host=host, port=port, access_log=None, handler_cancellation=True, shutdown_timeout=1.0, loop=loop
    )


if __name__ == "__main__":  # python -m claudestore.fake_upstream.server [PORT [API_KEY]]
    import sys

    run(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8099, api_key=(sys.argv[2:] or [None])[0])
