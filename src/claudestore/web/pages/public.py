"""Public pages: the landing page and the plans page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claudestore.web import catalog
from claudestore.web.render import page
from claudestore.web.sessions import Visitor
from claudestore.web.site import Site


def routes(site: Site) -> list[Route]:
    async def landing(request: Request, visitor: Visitor | None) -> Response:
        return page(request, "public/landing.html", models=catalog.models(site.config))

    async def plans(request: Request, visitor: Visitor | None) -> Response:
        async with site.db.session() as s:
            offers = await catalog.offers(s, site.config)
        return page(request, "public/plans.html", offers=offers)

    return [
        Route("/", site.public(landing), methods=["GET"]),
        Route("/plans", site.public(plans), methods=["GET"]),
    ]
