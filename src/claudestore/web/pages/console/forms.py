"""Turning the console's form text into the values the account services take, and back.

The services get the same values the JSON admin API passes them (numbers, decimal strings,
lists), so both get the same checks and messages. Blank fields are ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from claudestore.accounts.fields import MAX_INT32
from claudestore.accounts.money import PERIODS, nanos_to_usd
from claudestore.accounts.plans import PLAN_FIELDS
from claudestore.core.errors import InvalidRequest, NotFound
from claudestore.storage.billing_models import Plan
from claudestore.web.site import text_field

PLAN_CHECKBOXES = ("trial", "public")
#: The plan form's text inputs: every plan field but the checkboxes and the exact-nanos variant.
PLAN_TEXT_FIELDS = tuple(f for f in PLAN_FIELDS if f not in ("included_credit_nanos", *PLAN_CHECKBOXES))
PERIOD_OPTIONS = [(period, period.capitalize()) for period in PERIODS]
PLAN_DEFAULTS = {
    "price_usd": "0",
    "period": "month",
    "allowed_models": "*",
    "price_multiplier": "1",
    "public": "on",
}
_WHOLE = re.compile(r"-?[0-9]{1,30}")
_GROUPED = re.compile(r"-?[0-9]{1,3}(?:([ ,_])[0-9]{3})(?:\1[0-9]{3})*(?:\.[0-9]+)?")


def path_id(request: Request, name: str, what: str) -> int:
    """The id in the URL path parameter ``name``; ``NotFound`` when it cannot be a row id."""
    value = request.path_params[name]
    if not 1 <= value <= MAX_INT32:
        raise NotFound(f"No {what} with id {value}.")
    return int(value)


def typed(data: FormData, names: Iterable[str], checkboxes: Iterable[str] = ()) -> dict[str, str]:
    """What was typed, to fill the form again after an error."""
    found = {name: text_field(data, name) for name in names}
    found.update({name: "on" for name in checkboxes if data.get(name) is not None})
    return found


def _ungrouped(raw: str) -> str:
    """``1,000,000`` or ``1 000 000`` → ``1000000``; a comma anywhere else (``1,5``) stays, so
    the services refuse it instead of reading a decimal comma as a thousands separator."""
    raw = raw.strip()
    return re.sub(r"[ ,_]", "", raw) if _GROUPED.fullmatch(raw) else raw


def whole(form: Mapping[str, str], name: str) -> int | None:
    """A whole number (blank: None)."""
    raw = _ungrouped(form.get(name, ""))
    if not raw:
        return None
    if not _WHOLE.fullmatch(raw):
        raise InvalidRequest(f"{name}: expected a whole number, got {form[name].strip()!r}", param=name)
    return int(raw)


def amount(form: Mapping[str, str], name: str) -> str | None:
    """A decimal amount as text for the services (they convert it exactly); blank: None."""
    raw = form.get(name, "").strip()
    if raw.startswith("$"):
        raw = raw[1:]
    elif raw.startswith("-$"):
        raw = "-" + raw[2:]
    return _ungrouped(raw) or None


def patterns(raw: str) -> list[str]:
    """Model patterns separated by commas or spaces; blank means every model."""
    found = [p for p in re.split(r"[\s,]+", raw) if p]
    return found or ["*"]


def plan_data(form: Mapping[str, str]) -> dict[str, Any]:
    """The form as ``create_plan`` / ``update_plan`` input (every field, like the admin API)."""
    data: dict[str, Any] = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "price_usd": amount(form, "price_usd") or "0",
        "period": form.get("period", ""),
        "quota_tokens": whole(form, "quota_tokens"),
        "included_credit_usd": amount(form, "included_credit_usd"),
        "allowed_models": patterns(form.get("allowed_models", "")),
        "price_multiplier": amount(form, "price_multiplier") or "1",
        "trial": "trial" in form,
        "public": "public" in form,
    }
    for name in ("rpm", "tpm", "max_concurrency"):
        data[name] = whole(form, name)
    return data


def plan_form(plan: Plan) -> dict[str, str]:
    """A plan's values as the edit form shows them."""
    form = {
        "name": plan.name,
        "description": plan.description or "",
        "price_usd": str(plan.price_usd),
        "period": plan.period,
        "rpm": "" if plan.rpm is None else str(plan.rpm),
        "tpm": "" if plan.tpm is None else str(plan.tpm),
        "max_concurrency": "" if plan.max_concurrency is None else str(plan.max_concurrency),
        "quota_tokens": "" if plan.quota_tokens is None else str(plan.quota_tokens),
        "included_credit_usd": usd_text(plan.included_credit_nanos) if plan.included_credit_nanos else "",
        "allowed_models": ", ".join(plan.allowed_models or ["*"]),
        "price_multiplier": decimal_text(plan.price_multiplier),
    }
    form.update({name: "on" for name in PLAN_CHECKBOXES if getattr(plan, name)})
    return form


def decimal_text(value: Any) -> str:
    """A decimal without trailing zeros (``1.50`` → ``1.5``, ``2.00`` → ``2``)."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def per_mtok(value: Any) -> str:
    """A price per million tokens with every digit it has (``$0.075``), at least cents."""
    whole_part, _, frac = decimal_text(value).partition(".")
    return f"${whole_part}.{frac.ljust(2, '0')}"


def usd_text(nanos: int) -> str:
    return decimal_text(nanos_to_usd(nanos))
