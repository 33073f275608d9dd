"""``POST /v1/messages/count_tokens``.

An Anthropic upstream answers it with its own endpoint. An OpenAI-compatible API has
no counting endpoint, so the gateway asks that upstream for a one-token completion and
returns its ``usage.prompt_tokens``: exact for that upstream's tokenizer, at the cost
of one generated token. A provider that can count by itself (``Provider.count_tokens``,
the in-process local model) answers without generating.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from claudestore.core.errors import GatewayError
from claudestore.server.generate import dump_json, parse_json_object, send_error
from claudestore.server.http import ClientGone, Request, Send, send_bytes
from claudestore.translate.dialects import ANTHROPIC, DIALECTS

if TYPE_CHECKING:
    from claudestore.server.gateway import Gateway

_NOT_COUNTED = ("max_tokens", "stream", "metadata", "stop_sequences")


async def handle_count_tokens(gw: Gateway, req: Request, send: Send) -> None:
    headers = gw.response_headers(req)
    try:
        key = await gw.auth.authenticate_client(req.api_key(), req.scope)
        policy = await gw.accounting.policy(key)  # a disabled account or no active plan is refused here
        body = parse_json_object(await req.body(gw.config.server.max_body_bytes))
        for name in _NOT_COUNTED:
            body.pop(name, None)
        creq = ANTHROPIC.parse_request({**body, "max_tokens": 1})
        route = gw.router.resolve(creq.model)
        policy.check_model(route.public_model)
        provider = route.provider
        if provider.format == "anthropic":
            body["model"] = route.upstream_model
            resp = await provider.open("count_tokens", dump_json(body), req.headers)
            answer = await resp.json()
            count = answer.get("input_tokens") if isinstance(answer, dict) else None
        else:
            creq.max_tokens, creq.stream = 1, False
            payload = DIALECTS[provider.format].build_request(creq, route.upstream_model, 1)
            count = await provider.count_tokens(payload)  # a local model counts with its own tokenizer
            if count is None:
                resp = await provider.open("generate", dump_json(payload), req.headers)
                count = DIALECTS[provider.format].usage_of(await resp.json()).prompt_tokens
        if not isinstance(count, int):
            raise GatewayError("The upstream did not report a token count.", status=502)
        await send_bytes(send, 200, orjson.dumps({"input_tokens": count}), headers)
    except GatewayError as err:
        await send_error(send, ANTHROPIC, err, headers)
    except ClientGone:
        return  # the client left before its body was complete: nobody to answer
    except Exception:
        gw.log.exception("unhandled error in count_tokens %s", req.request_id)
        err = GatewayError("The gateway failed while counting tokens; it has been logged.")
        await send_error(send, ANTHROPIC, err, headers)
