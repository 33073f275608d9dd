"""The request bodies: the fields, types and limits the services (``accounts/*.py``) enforce."""

from __future__ import annotations

from collections.abc import Iterable

from claudestore.accounts import accounts, codes, fields, keys, money, plans, prices
from claudestore.api.openapi.schemas import (
    BOOLEAN,
    NON_BLANK,
    SPACES,
    WHEN,
    WS,
    Schema,
    at_most_one,
    body,
    given,
    nullable,
    optional_text,
    text,
)

MAX_CREDIT_USD = int(money.MAX_CREDIT_USD)
MAX_PER_MTOK = int(prices._MAX_PER_MTOK)
MAX_CREDIT_NANOS = MAX_CREDIT_USD * money.NANOS_PER_USD

EMAIL: Schema = {
    "type": "string",
    "maxLength": 320,
    "pattern": f"^{SPACES}[^@{WS}\\x00]+@[^@{WS}\\x00]+\\.[^@{WS}\\x00]+{SPACES}$",
    "description": "An email address (stored in lower case).",
}
OPTIONAL_EMAIL: Schema = {
    "anyOf": [EMAIL, {"const": ""}, {"type": "null"}],
    "description": "Empty or null clears it.",
}
LIMIT: Schema = {
    "type": ["integer", "null"],
    "minimum": 1,
    "maximum": fields.MAX_INT32,
    "description": "A positive limit, or null for none.",
}
PATTERNS: Schema = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "maxLength": 200, "pattern": NON_BLANK},
    "description": 'fnmatch model patterns such as ["claude-*"]; ["*"] allows every model.',
}
EXPIRES_IN_DAYS: Schema = {"type": ["integer", "null"], "minimum": 1, "maximum": 36500}


def decimal(maximum: int, places: int, *, minimum: int = 0, description: str = "") -> Schema:
    """A decimal amount as a JSON number or a decimal string (``"3.75"``), ``places`` decimals at most."""
    sign = "-?" if minimum < 0 else ""
    # Whole digits such that any string the pattern allows is within ``maximum``.
    digits = len(str(maximum)) - (0 if set(str(maximum)) == {"9"} else 1)
    return {
        "anyOf": [
            {"type": "number", "minimum": minimum, "maximum": maximum, "multipleOf": 10**-places},
            {
                "type": "string",
                "pattern": f"^{SPACES}{sign}[0-9]{{1,{digits}}}(\\.[0-9]{{1,{places}}})?{SPACES}$",
            },
        ],
        "description": f"{description} At most {places} decimal places, from {minimum} to {maximum}.".strip(),
    }


def nanos(minimum: int = 0) -> Schema:
    """An amount in nano-dollars, or null."""
    return {"type": ["integer", "null"], "minimum": minimum, "maximum": MAX_CREDIT_NANOS}


def per_mtok(description: str) -> Schema:
    """A price in USD per million tokens."""
    return decimal(MAX_PER_MTOK, 6, description=f"USD per million {description}.")


#: ``price_multiplier``: above 0 (a string of zeros is refused too), 4 decimal places, at most 1000.
MULTIPLIER: Schema = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1000, "multipleOf": 0.0001},
        {
            "type": "string",
            "pattern": (
                f"^{SPACES}(0*[1-9][0-9]{{0,2}}(\\.[0-9]{{1,4}})?"
                f"|[0-9]+\\.([1-9][0-9]{{0,3}}|0[1-9][0-9]{{0,2}}|00[1-9][0-9]?|000[1-9])){SPACES}$"
            ),
        },
    ],
    "description": "1 = list price. Above 0, at most 1000, at most 4 decimal places.",
}


def _documents_all(schema: dict[str, Schema], names: Iterable[str]) -> dict[str, Schema]:
    """``schema``, checked to give exactly the fields the service takes (``names``)."""
    assert set(schema) == set(names)
    return schema


def _key_fields() -> dict[str, Schema]:
    schema = {
        "name": text(200, 'Default "default".'),
        "expires_at": nullable(
            WHEN | {"description": "Must be in the future; give this or expires_in_days."}
        ),
        "expires_in_days": EXPIRES_IN_DAYS,
        "allowed_models": nullable(PATTERNS),
        **dict.fromkeys(("rpm_limit", "tpm_limit", "concurrency_limit"), LIMIT),
    }
    return _documents_all(schema, keys.KEY_FIELDS)


def _plan_fields() -> dict[str, Schema]:
    schema = {
        "name": text(100),
        "description": optional_text(1000),
        "price_usd": decimal(10**9, 2, description="Price per period in USD (default 0)."),
        "period": {"enum": list(money.PERIODS), "default": "month"},
        **dict.fromkeys(("rpm", "tpm", "max_concurrency"), LIMIT),
        "quota_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": fields.MAX_INT64},
        "included_credit_usd": nullable(
            decimal(MAX_CREDIT_USD, 9, description="Credit granted on subscribing.")
        ),
        "included_credit_nanos": nanos(),
        "allowed_models": PATTERNS,
        "price_multiplier": MULTIPLIER,
        "trial": BOOLEAN,
        "public": BOOLEAN,
    }
    return _documents_all(schema, plans.PLAN_FIELDS)


def account_requests() -> dict[str, Schema]:
    """Accounts, their members and keys (keys of the customer API too)."""
    one_expiry = at_most_one("expires_at", "expires_in_days")
    return {
        "AccountCreate": body(
            {
                "name": text(200),
                "kind": {"enum": list(accounts.KINDS), "default": "person"},
                "email": OPTIONAL_EMAIL,
            },
            required=("name",),
            example={"name": "Acme Ltd", "kind": "organisation", "email": "ops@acme.example"},
        ),
        "AccountUpdate": body(
            {
                "name": text(200),
                "kind": {"enum": list(accounts.KINDS)},
                "email": OPTIONAL_EMAIL,
                "disabled": {
                    "type": "boolean",
                    "description": "true disables the account, false enables it.",
                },
            }
        ),
        "MemberAdd": body(
            {
                "email": EMAIL,
                "role": {"enum": list(accounts.ROLES), "default": "member"},
                "name": optional_text(200),
            },
            required=("email",),
            description="Adds the user with this email (created if new); an existing member gets the role.",
        ),
        "KeyCreate": body(_key_fields(), allOf=[one_expiry], example={"name": "ci-bot", "rpm_limit": 10}),
        "KeyUpdate": body(
            _key_fields(), allOf=[one_expiry], description="expires_at null removes the expiry."
        ),
    }


def billing_requests() -> dict[str, Schema]:
    """Subscriptions, credit, plans, prices and redeem codes."""
    one_credit = at_most_one("included_credit_usd", "included_credit_nanos")
    return {
        "SubscriptionCreate": body(
            {"plan": {"anyOf": [{"type": "integer"}, text(100)], "description": "A plan id or exact name."}},
            required=("plan",),
            description="Subscribes from now, replacing the active subscription. Archived plans are refused.",
        ),
        "CreditCreate": body(
            {
                "usd": nullable(decimal(MAX_CREDIT_USD, 9, minimum=-MAX_CREDIT_USD, description="USD.")),
                "nanos": nanos(-MAX_CREDIT_NANOS),
                "reference": optional_text(200, "Free text such as an invoice number."),
                "kind": {"enum": ["topup", "adjustment"], "default": "topup"},
            },
            description=(
                "Exactly one of usd or nanos. A topup adds a positive amount; an adjustment "
                "is any non-zero amount, negative takes credit away."
            ),
            anyOf=[given("usd"), given("nanos")],
            allOf=[at_most_one("usd", "nanos")],
            example={"usd": "10.00", "reference": "invoice 42"},
        ),
        "PlanCreate": body(
            _plan_fields(), required=("name",), allOf=[one_credit], example={"name": "starter", "rpm": 60}
        ),
        "PlanUpdate": body(
            {
                **_plan_fields(),
                "archived": {"type": "boolean", "description": "false restores an archived plan."},
            },
            allOf=[one_credit],
        ),
        "PriceSet": body(
            {
                "input": per_mtok("input tokens"),
                "output": per_mtok("output tokens"),
                "cache_write": nullable(per_mtok("cache-write tokens (default 1.25 x input)")),
                "cache_read": nullable(per_mtok("cache-read tokens (default 0.1 x input)")),
            },
            required=("input", "output"),
            description="An input price above 79999999.2 needs an explicit cache_write (1.25 x input would overflow).",
            example={"input": "3", "output": "15"},
        ),
        "CodesCreate": body(
            {
                "count": {"type": "integer", "minimum": 1, "maximum": codes.MAX_BATCH, "default": 1},
                "credit_usd": nullable(
                    decimal(MAX_CREDIT_USD, 9, description="Credit each redemption adds, USD.")
                ),
                "credit_nanos": nanos(),
                "plan": {
                    "anyOf": [{"type": "integer"}, text(100), {"type": "null"}],
                    "description": "A plan id or name the code subscribes to (not archived).",
                },
                "max_uses": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1},
                "expires_at": nullable(WHEN),
                "expires_in_days": EXPIRES_IN_DAYS,
            },
            description="A code needs credit, a plan, or both. Each raw code is shown only once.",
            allOf=[at_most_one("credit_usd", "credit_nanos"), at_most_one("expires_at", "expires_in_days")],
            anyOf=[given("credit_usd"), given("credit_nanos"), given("plan")],
            example={"count": 5, "credit_usd": "5"},
        ),
        "Redeem": body(
            {
                "code": text(
                    100, "A code such as CS-7KQM-X2PD-9TWC-H4NB-RJ3E; case, spaces and dashes do not matter."
                )
            },
            required=("code",),
        ),
    }
