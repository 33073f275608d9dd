"""The API docs: ``/docs`` (an index) and ``/docs/{page}``, public, one template per page.

Every page is rendered with this server's own address (``base_url``) and its configured
models filled into the examples, so a reader can paste them as they are. The models and
rate-limits pages also list the public plans on offer (``catalog.offers``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claudestore.server.models import list_models
from claudestore.web import catalog
from claudestore.web.render import page
from claudestore.web.sessions import Visitor
from claudestore.web.site import Site

#: Shown in the examples when the operator has configured no model yet.
PLACEHOLDER_MODEL = "claude-sonnet-4-6"
#: Entries shown in the models page's example of a ``GET /v1/models`` answer.
EXAMPLE_LIMIT = 2


@dataclass(frozen=True, slots=True)
class DocPage:
    slug: str
    title: str
    summary: str


PAGES = (
    DocPage("quickstart", "Quick start", "Your first request: curl, the Python and JS SDKs, Claude Code."),
    DocPage("streaming", "Streaming", "Server-sent events on both APIs, and what a disconnect costs."),
    DocPage("errors", "Errors", "Statuses and error types on both APIs, example bodies, when to retry."),
    DocPage("rate-limits", "Rate limits", "Plan limits, the rate-limit headers in both styles, 429 vs 402."),
    DocPage("models", "Models", "The models served here, the plans that include them, GET /v1/models."),
)
BY_SLUG = {p.slug: p for p in PAGES}


@dataclass(frozen=True, slots=True)
class ModelRow:
    id: str
    name: str
    aliases: list[str]
    plans: list[str]  # names of the public plans whose allowed patterns match the id


def routes(site: Site) -> list[Route]:
    def example_model() -> str:
        models = catalog.models(site.config)
        return models[0].id if models else PLACEHOLDER_MODEL

    async def index(request: Request, visitor: Visitor | None) -> Response:
        return page(request, "docs/index.html", pages=PAGES, current=None, example_model=example_model())

    async def doc(request: Request, visitor: Visitor | None) -> Response:
        current = BY_SLUG.get(request.path_params["page"])
        if current is None:
            raise HTTPException(404)
        return page(
            request,
            f"docs/{current.slug}.html",
            pages=PAGES,
            current=current,
            example_model=example_model(),
            **await page_context(site, current.slug),
        )

    return [
        Route("/docs", site.public(index), methods=["GET"]),
        Route("/docs/{page}", site.public(doc), methods=["GET"]),
    ]


async def page_context(site: Site, slug: str) -> dict[str, Any]:
    """What one page shows besides the shared context: settings, plans, models."""
    config = site.config
    if slug == "streaming":
        interval = config.server.keepalive_interval
        return {"keepalive": f"{interval:g}" if interval > 0 else None}
    if slug == "errors":
        return {"max_body": _size(config.server.max_body_bytes)}
    if slug not in ("models", "rate-limits"):
        return {}
    async with site.db.session() as s:
        offers = await catalog.offers(s, config)
    if slug == "rate-limits":
        return {"offers": offers}
    # The answer GET /v1/models gives for its first two entries, from the endpoint's own code.
    listing = list_models(config.models, f"limit={EXAMPLE_LIMIT}".encode()) if config.models else None
    return {
        "offers": offers,
        "rows": model_rows(site, offers),
        "example_list": json.dumps(listing, indent=2, ensure_ascii=False) if listing else None,
        "example_paged": bool(listing and listing["has_more"]),
        "example_limit": EXAMPLE_LIMIT,
    }


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n:,} bytes"


def model_rows(site: Site, offers: list[catalog.Offer]) -> list[ModelRow]:
    aliases = {m.id: list(m.aliases) for m in site.config.models}
    return [
        ModelRow(
            id=m.id,
            name=m.name,
            aliases=aliases.get(m.id, []),
            plans=[o.plan.name for o in offers if any(entry.id == m.id for entry in o.models)],
        )
        for m in catalog.models(site.config)
    ]
