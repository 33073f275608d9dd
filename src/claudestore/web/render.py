"""Jinja2 rendering: one autoescaping environment over the package's templates, with filters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from claudestore.accounts.money import format_usd


def usd(nanos: int | None) -> str:
    if nanos is None:
        return "—"
    text = format_usd(nanos)
    whole, _, frac = text.partition(".")
    frac = (frac + "00")[: max(2, len(frac.rstrip("0")))]
    return f"${whole}.{frac}"


def _price(value: Decimal | str | None) -> str:
    if value is None:
        return "—"
    return f"${Decimal(value):,.2f}"


def _number(value: int | float | None) -> str:
    if value is None:
        return "unlimited"
    return f"{value:,}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _tokens(value: int | None) -> str:
    if value is None:
        return "—"
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(value)


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("claudestore.web", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(usd=usd, price=_price, number=_number, when=_when, tokens=_tokens)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the request's shared context (site, visitor, csrf token)."""
    shared: dict[str, Any] = dict(request.state.shared)
    shared.update(context)
    shared["request_path"] = request.url.path
    html = ENV.get_template(template).render(shared)
    return HTMLResponse(html, status_code=status)
