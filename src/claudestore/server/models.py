"""``GET /v1/models`` and ``GET /v1/models/{id}``: one shape both SDKs parse.

Each entry carries Anthropic's fields (``type``, ``display_name``, ``created_at``) and
OpenAI's (``object``, ``created``, ``owned_by``); the list carries Anthropic's paging
fields (``has_more``, ``first_id``, ``last_id``) and OpenAI's ``object: "list"``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from claudestore.config import ModelConfig
from claudestore.core.errors import InvalidRequest, NotFound


def model_entry(m: ModelConfig) -> dict[str, Any]:
    created = int(datetime.fromisoformat(m.created_at.replace("Z", "+00:00")).timestamp())
    return {
        "type": "model",
        "id": m.id,
        "display_name": m.display_name or m.id,
        "created_at": m.created_at,
        "object": "model",
        "created": created,
        "owned_by": "claudestore",
    }


def list_models(models: list[ModelConfig], query: bytes) -> dict[str, Any]:
    params = {k: v[-1] for k, v in parse_qs(query.decode("latin-1")).items()}
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit: must be an integer between 1 and 1000.", param="limit") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit: must be an integer between 1 and 1000.", param="limit")
    ids = [m.id for m in models]
    start, end = 0, len(models)
    if "after_id" in params:
        if params["after_id"] not in ids:
            raise InvalidRequest(f"after_id: unknown model id {params['after_id']!r}.", param="after_id")
        start = ids.index(params["after_id"]) + 1
    if "before_id" in params:
        if params["before_id"] not in ids:
            raise InvalidRequest(f"before_id: unknown model id {params['before_id']!r}.", param="before_id")
        end = ids.index(params["before_id"])
        start = max(start, end - limit)
    page = models[start:end][:limit]
    data = [model_entry(m) for m in page]
    has_more = start + len(page) < end if "before_id" not in params else start > 0
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def get_model(models: list[ModelConfig], model_id: str) -> dict[str, Any]:
    for m in models:
        if model_id == m.id or model_id in m.aliases:
            return model_entry(m)
    raise NotFound(
        f"model: {model_id[:200]!r} is not available on this gateway.", param="model", code="model_not_found"
    )
