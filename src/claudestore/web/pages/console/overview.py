"""The console's overview (counts, today's and this week's usage, upstream health), the
upstreams page and the usage page (by day, model and account)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claudestore.accounts import accounts, plans, subscriptions, usage
from claudestore.core.errors import NotFound
from claudestore.storage.models import utcnow
from claudestore.web import charts
from claudestore.web.pages.console.notices import notice
from claudestore.web.render import page, usd
from claudestore.web.sessions import Visitor
from claudestore.web.site import Site

RANGES = (7, 30, 90)
#: Per-account usage rows shown (the biggest spenders first).
TOP_ACCOUNTS = 100
#: The usage page looks account names up in one list of up to this many accounts first.
NAMES_LISTED = 1000


def midnight_days_ago(days: int) -> datetime:
    return utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)


def _range(request: Request) -> int:
    raw = request.query_params.get("days", "30")
    return int(raw) if raw.isdigit() and int(raw) in RANGES else 30


async def _account_names(session: AsyncSession, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if isinstance(i, int)}
    if not wanted:
        return {}
    names = {
        a.id: a.name for a in await accounts.list_accounts(session, limit=NAMES_LISTED) if a.id in wanted
    }
    for account_id in wanted - names.keys():
        try:
            names[account_id] = (await accounts.get_account(session, account_id)).name
        except NotFound:
            names[account_id] = f"deleted account #{account_id}"
    return names


def _upstream_rows(site: Site) -> list[dict[str, Any]]:
    now = time.monotonic()
    return [d.snapshot(now) for d in site.deployments()]


def routes(site: Site) -> list[Route]:
    async def overview(request: Request, visitor: Visitor) -> Response:
        async with site.db.session() as s:
            account_counts = await accounts.count_accounts(s)
            active_subs = await subscriptions.count_active(s)
            plan_rows = await plans.list_plans(s, include_archived=True)
            (today,) = await usage.summarize(s, start=midnight_days_ago(0))
            (week,) = await usage.summarize(s, start=midnight_days_ago(6))
        upstreams = _upstream_rows(site)
        states = Counter(u["state"] for u in upstreams)
        counts = {
            "accounts": account_counts.total,
            "disabled": account_counts.disabled,
            "plans": sum(1 for p in plan_rows if p.archived_at is None),
            "public_plans": sum(1 for p in plan_rows if p.archived_at is None and p.public),
            "archived_plans": sum(1 for p in plan_rows if p.archived_at is not None),
            "subscriptions": active_subs,
        }
        return page(
            request,
            "console/overview.html",
            counts=counts,
            today=today,
            week=week,
            upstreams=upstreams,
            states=dict(states),
            message=notice(request),
        )

    async def upstreams_page(request: Request, visitor: Visitor) -> Response:
        return page(request, "console/upstreams.html", upstreams=_upstream_rows(site))

    async def usage_page(request: Request, visitor: Visitor) -> Response:
        span = _range(request)
        start = midnight_days_ago(span - 1)
        async with site.db.session() as s:
            (total,) = await usage.summarize(s, start=start)
            per_day = await usage.summarize(s, start=start, group_by="day")
            per_model = await usage.summarize(s, start=start, group_by="model")
            per_account = await usage.summarize(s, start=start, group_by="account")
            recent = await usage.recent(s, limit=50)
            per_account.sort(key=lambda r: (-r.cost_nanos, -r.total_tokens))
            names = await _account_names(
                s, [r.group for r in per_account[:TOP_ACCOUNTS]] + [r.account_id for r in recent]
            )
        token_chart, cost_chart = charts.daily_usage(per_day, utcnow().date(), span, usd)
        return page(
            request,
            "console/usage.html",
            span=span,
            ranges=RANGES,
            total=total,
            per_account=per_account[:TOP_ACCOUNTS],
            more_accounts=len(per_account) > TOP_ACCOUNTS,
            per_model=per_model,
            per_day=per_day,
            recent=recent,
            names=names,
            token_chart=token_chart,
            cost_chart=cost_chart,
        )

    table: list[tuple[str, str, Any]] = [
        ("/console", "GET", overview),
        ("/console/upstreams", "GET", upstreams_page),
        ("/console/usage", "GET", usage_page),
    ]
    return [Route(path, site.admin(handler), methods=[method]) for path, method, handler in table]
