"""The OpenAPI 3.1 document of the admin API (``/admin``) and the customer API (``/v1/account``).

Written by hand from the handlers (``api/admin.py``, ``api/account.py``), the serializers
(``api/serialize.py``) and the services' validation (``accounts/*.py``, ``accounts/fields.py``):
request schemas give the fields, types and limits the services enforce, and reject unknown
fields as the services do; response schemas give exactly what the serializers return
(``additionalProperties: false``, so a new field must be documented here).

Served at ``GET /admin/openapi.json`` (admin key; both APIs) and ``GET /v1/account/openapi.json``
(no key; the customer API only). ``tests/test_schemathesis.py`` checks that every route of both
Starlette apps is documented, and fuzzes a running gateway against this document.

A few rules cannot be said in JSON Schema and are given in the descriptions only: an
``expires_at`` must lie in the future; a top-up is positive and an adjustment non-zero; ``to``
must be after ``from``; an input price above 79,999,999.2 needs its own ``cache_write``. And two
leniencies are not described: an empty query parameter (``?limit=``) counts as not given, and a
JSON Schema "integer" written as ``3.0`` is refused (the services want a JSON integer). Text is
trimmed (Python's whitespace, spelled out in the patterns) before its length is checked.
"""

from __future__ import annotations

import copy
import functools
from importlib import metadata
from typing import Any

from claudestore.accounts import accounts, codes, credit, fields, keys, money, plans, prices, usage
from claudestore.core.errors import ERROR_KINDS

Schema = dict[str, Any]

ADMIN_SECURITY = [{"adminBearer": []}, {"adminApiKey": []}]
CUSTOMER_SECURITY = [{"customerApiKey": []}, {"customerBearer": []}]
MAX_ID = fields.MAX_INT32


def _version() -> str:
    try:
        return metadata.version("claudestore")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


# -- schema helpers -------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if isinstance(schema.get("type"), str) and "$ref" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], *, optional: tuple[str, ...] = (), **extra: Any) -> Schema:
    """A closed object; every property is required except ``optional`` ones."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
        **extra,
    }


def body(properties: dict[str, Schema], *, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    """A request body: a closed object (the services reject unknown fields)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _given(name: str) -> Schema:
    """``name`` is present and not null (the services treat null as absent)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _at_most_one(a: str, b: str) -> Schema:
    """Not both ``a`` and ``b`` given (null counts as absent): the services refuse both."""
    return {"not": {"allOf": [_given(a), _given(b)]}}


def const(value: Any) -> Schema:
    return {"const": value}


INTEGER: Schema = {"type": "integer"}
ID: Schema = {"type": "integer", "minimum": 1}
BOOLEAN: Schema = {"type": "boolean"}
STRING: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
# Text the services trim, then require non-empty and free of NUL (PostgreSQL's text cannot hold it).
_NOT_NUL = "[^\\x00]*"
#: Python's whitespace (what str.strip() removes), spelled out because JSON Schema's ``\\s``
#: (ECMA-262) differs: it lacks U+001C..U+001F and U+0085, and has U+FEFF.
_WS = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_SPACES = f"[{_WS}]*"
NON_BLANK = f"^{_NOT_NUL}[^{_WS}\\x00]{_NOT_NUL}$"


def text(max_len: int, description: str | None = None) -> Schema:
    schema: Schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": max_len,
        "pattern": NON_BLANK,
    }
    if description:
        schema["description"] = description
    return schema


def optional_text(max_len: int, description: str | None = None) -> Schema:
    schema: Schema = {"type": ["string", "null"], "maxLength": max_len, "pattern": f"^{_NOT_NUL}$"}
    if description:
        schema["description"] = description
    return schema


EMAIL: Schema = {
    "type": "string",
    "maxLength": 320,
    "pattern": f"^{_SPACES}[^@{_WS}\\x00]+@[^@{_WS}\\x00]+\\.[^@{_WS}\\x00]+{_SPACES}$",
    "description": "An email address (stored in lower case).",
}
OPTIONAL_EMAIL: Schema = {
    "anyOf": [EMAIL, {"const": ""}, {"type": "null"}],
    "description": "Empty or null clears it.",
}
WHEN: Schema = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
    "description": "An ISO 8601 time (2026-01-31T12:00:00Z) or date (midnight UTC); no offset means UTC.",
}
WHEN_QUERY: Schema = {
    **WHEN,
    "anyOf": [*WHEN["anyOf"], {"const": ""}],
    "description": WHEN["description"] + " Empty: no bound.",
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
                "pattern": f"^{_SPACES}{sign}[0-9]{{1,{digits}}}(\\.[0-9]{{1,{places}}})?{_SPACES}$",
            },
        ],
        "description": f"{description} At most {places} decimal places, from {minimum} to {maximum}.".strip(),
    }


#: ``price_multiplier``: above 0 (a string of zeros is refused too), 4 decimal places, at most 1000.
MULTIPLIER: Schema = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1000, "multipleOf": 0.0001},
        {
            "type": "string",
            "pattern": (
                f"^{_SPACES}(0*[1-9][0-9]{{0,2}}(\\.[0-9]{{1,4}})?"
                f"|[0-9]+\\.([1-9][0-9]{{0,3}}|0[1-9][0-9]{{0,2}}|00[1-9][0-9]?|000[1-9])){_SPACES}$"
            ),
        },
    ],
    "description": "1 = list price. Above 0, at most 1000, at most 4 decimal places.",
}


MAX_CREDIT_USD = int(money.MAX_CREDIT_USD)
MAX_PER_MTOK = int(prices._MAX_PER_MTOK)
MAX_CREDIT_NANOS = MAX_CREDIT_USD * money.NANOS_PER_USD
DECIMAL_STRING: Schema = {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"}
MONEY = obj(
    {
        "nanos": {"type": "integer", "description": "Exact amount in nano-dollars (1e-9 USD)."},
        "usd": {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2,9}$", "description": "The same in USD."},
    }
)


# -- response objects -----------------------------------------------------------------------------

ACCOUNT_FIELDS: dict[str, Schema] = {
    "id": ID,
    "type": const("account"),
    "name": STRING,
    "kind": {"enum": list(accounts.KINDS)},
    "email": nullable(STRING),
    "balance": ref("Money"),
    "created_at": TIME,
    "disabled_at": nullable(TIME),
    "status": {"enum": ["active", "disabled"]},
}
PLAN_FIELDS: dict[str, Schema] = {
    "id": ID,
    "type": const("plan"),
    "name": STRING,
    "description": nullable(STRING),
    "price_usd": DECIMAL_STRING,
    "period": {"enum": list(money.PERIODS)},
    "rpm": nullable(INTEGER),
    "tpm": nullable(INTEGER),
    "max_concurrency": nullable(INTEGER),
    "quota_tokens": nullable(INTEGER),
    "included_credit": ref("Money"),
    "allowed_models": {"type": "array", "items": STRING},
    "price_multiplier": DECIMAL_STRING,
    "trial": BOOLEAN,
    "public": BOOLEAN,
    "created_at": TIME,
    "archived_at": nullable(TIME),
}
KEY_FIELDS: dict[str, Schema] = {
    "id": ID,
    "type": const("api_key"),
    "name": STRING,
    "prefix": STRING,
    "account_id": nullable(ID),
    "status": {"enum": ["active", "revoked", "expired"]},
    "created_at": TIME,
    "last_used_at": nullable(TIME),
    "expires_at": nullable(TIME),
    "revoked_at": nullable(TIME),
    "allowed_models": nullable({"type": "array", "items": STRING}),
    "rpm_limit": nullable(INTEGER),
    "tpm_limit": nullable(INTEGER),
    "concurrency_limit": nullable(INTEGER),
}
MEMBER_FIELDS: dict[str, Schema] = {
    "user_id": ID,
    "type": const("member"),
    "email": STRING,
    "name": nullable(STRING),
    "role": {"enum": list(accounts.ROLES)},
    "added_at": TIME,
}
PRICE_FIELDS: dict[str, Schema] = {
    "id": ID,
    "type": const("model_price"),
    "model": STRING,
    "input_per_mtok": DECIMAL_STRING,
    "output_per_mtok": DECIMAL_STRING,
    "cache_write_per_mtok": DECIMAL_STRING,
    "cache_read_per_mtok": DECIMAL_STRING,
    "updated_at": TIME,
}
CODE_FIELDS: dict[str, Schema] = {
    "id": ID,
    "type": const("redeem_code"),
    "prefix": STRING,
    "credit": ref("Money"),
    "plan_id": nullable(ID),
    "max_uses": INTEGER,
    "uses": INTEGER,
    "expires_at": nullable(TIME),
    "created_at": TIME,
}
SUBSCRIPTION_FIELDS: dict[str, Schema] = {
    "id": ID,
    "type": const("subscription"),
    "account_id": ID,
    "plan_id": ID,
    "status": {"enum": ["active", "cancelled", "expired"]},
    "period_start": TIME,
    "period_end": TIME,
    "in_period": BOOLEAN,
    "renews": BOOLEAN,
    "created_at": TIME,
    "cancelled_at": nullable(TIME),
    "plan_name": STRING,
}
USAGE_ROW_FIELDS: dict[str, Schema] = {
    "requests": INTEGER,
    "errors": {"type": "integer", "description": "Requests that ended with a status of 400 or more."},
    "input_tokens": INTEGER,
    "output_tokens": INTEGER,
    "cache_write_tokens": INTEGER,
    "cache_read_tokens": INTEGER,
    "cost_nanos": INTEGER,
    "total_tokens": INTEGER,
    "cost_usd": DECIMAL_STRING,
}
USAGE_GROUPS: dict[str, Schema] = {
    "day": nullable({"type": "string", "format": "date"}),
    "model": nullable(STRING),
    "key_id": nullable(INTEGER),
    "account_id": nullable(INTEGER),
}
RECORD_FIELDS: dict[str, Schema] = {
    "id": ID,
    "request_id": STRING,
    "created_at": TIME,
    "key_id": nullable(INTEGER),
    "account_id": nullable(INTEGER),
    "endpoint": STRING,
    "model": nullable(STRING),
    "upstream": nullable(STRING),
    "upstream_model": nullable(STRING),
    "input_tokens": INTEGER,
    "output_tokens": INTEGER,
    "cache_write_tokens": INTEGER,
    "cache_read_tokens": INTEGER,
    "cost_nanos": INTEGER,
    "status": INTEGER,
    "error_kind": nullable(STRING),
    "stop_reason": nullable(STRING),
    "latency_ms": nullable({"type": "number"}),
    "ttft_ms": nullable({"type": "number"}),
    "streamed": BOOLEAN,
    "client_disconnected": BOOLEAN,
    "attempts": INTEGER,
    "cost_usd": DECIMAL_STRING,
}


def _customer_record_fields() -> dict[str, Schema]:
    from claudestore.api.serialize import CUSTOMER_RECORD_FIELDS

    return {name: RECORD_FIELDS[name] for name in (*CUSTOMER_RECORD_FIELDS, "cost_usd")}


def _usage_report(row: str) -> Schema:
    return obj(
        {
            "group_by": nullable(STRING),
            "from": nullable(TIME),
            "to": nullable(TIME),
            "data": {"type": "array", "items": ref(row)},
            "total": ref("UsageTotal"),
        }
    )


def _page(item: str) -> Schema:
    return obj(
        {
            "data": {"type": "array", "items": ref(item)},
            "has_more": BOOLEAN,
            "next_before_id": nullable(ID),
        }
    )


def _list(item: str) -> Schema:
    return obj({"data": {"type": "array", "items": ref(item)}})


def _components() -> dict[str, Schema]:
    customer_plan = {k: v for k, v in PLAN_FIELDS.items() if k not in ("public", "archived_at", "created_at")}
    customer_account = {k: v for k, v in ACCOUNT_FIELDS.items() if k != "balance"}
    return {
        "Error": obj(
            {
                "type": const("error"),
                "error": obj(
                    {
                        "type": {"enum": sorted({*ERROR_KINDS.values()})},
                        "message": {"type": "string", "minLength": 1},
                    }
                ),
                "request_id": {"type": "string", "pattern": "^req_"},
            },
            description="Every error, in the Anthropic Messages API's envelope.",
        ),
        "Money": MONEY,
        "Account": obj(ACCOUNT_FIELDS),
        "AccountDetail": obj(
            {
                **ACCOUNT_FIELDS,
                "subscription": nullable(ref("Subscription")),
                "plan": nullable(ref("Plan")),
            }
        ),
        "DeletedAccount": obj({"id": ID, "type": const("account"), "deleted": const(True)}),
        "Member": obj(MEMBER_FIELDS),
        "RemovedMember": obj({**MEMBER_FIELDS, "removed": const(True)}),
        "ApiKey": obj(KEY_FIELDS),
        "CreatedApiKey": obj(
            {
                **KEY_FIELDS,
                "key": {"type": "string", "pattern": "^sk-cs-", "description": "Shown only once."},
                "note": STRING,
            }
        ),
        "Plan": obj(PLAN_FIELDS),
        "DeletedPlan": obj(
            {
                **PLAN_FIELDS,
                "result": {
                    "enum": ["deleted", "archived"],
                    "description": "A plan that subscriptions or codes refer to is archived instead.",
                },
            }
        ),
        "Subscription": obj(SUBSCRIPTION_FIELDS, optional=("plan_name",)),
        "Subscribed": obj(
            {
                "subscription": ref("Subscription"),
                "plan": ref("Plan"),
                "grant": nullable(ref("CreditEntry")),
                "replaced": {"type": "integer", "minimum": 0},
            }
        ),
        "CreditEntry": obj(
            {
                "id": ID,
                "type": const("credit_entry"),
                "account_id": ID,
                "kind": {"enum": list(credit.KINDS)},
                "amount": ref("Money"),
                "reference": nullable(STRING),
                "created_at": TIME,
            }
        ),
        "CreditAdded": obj({"entry": ref("CreditEntry"), "balance": ref("Money")}),
        "ModelPrice": obj(PRICE_FIELDS),
        "DeletedModelPrice": obj({**PRICE_FIELDS, "deleted": const(True)}),
        "RedeemCode": obj(CODE_FIELDS),
        "CreatedRedeemCode": obj(
            {**CODE_FIELDS, "code": {"type": "string", "pattern": "^CS-", "description": "Shown only once."}}
        ),
        "CreatedRedeemCodes": obj(
            {"data": {"type": "array", "items": ref("CreatedRedeemCode")}, "note": STRING}
        ),
        "DeletedRedeemCode": obj({**CODE_FIELDS, "deleted": const(True)}),
        "UsageTotal": obj(USAGE_ROW_FIELDS),
        "UsageGroup": obj(
            {**USAGE_GROUPS, **USAGE_ROW_FIELDS},
            optional=tuple(USAGE_GROUPS),
            maxProperties=len(USAGE_ROW_FIELDS) + 1,
            description="A group's totals; the group is named by day, model, key_id or account_id.",
        ),
        "CustomerUsageGroup": obj(
            {name: USAGE_GROUPS[name] for name in ("day", "model", "key_id")} | USAGE_ROW_FIELDS,
            optional=("day", "model", "key_id"),
            maxProperties=len(USAGE_ROW_FIELDS) + 1,
        ),
        "UsageReport": _usage_report("UsageGroup"),
        "CustomerUsageReport": _usage_report("CustomerUsageGroup"),
        "UsageRecord": obj(RECORD_FIELDS),
        "CustomerUsageRecord": obj(_customer_record_fields()),
        "UsageRecordPage": _page("UsageRecord"),
        "CustomerUsageRecordPage": _page("CustomerUsageRecord"),
        "AccountList": _list("Account"),
        "MemberList": _list("Member"),
        "ApiKeyList": _list("ApiKey"),
        "PlanList": _list("Plan"),
        "SubscriptionList": _list("Subscription"),
        "CreditEntryList": _list("CreditEntry"),
        "ModelPriceList": _list("ModelPrice"),
        "RedeemCodeList": _list("RedeemCode"),
        "Deployment": {
            "type": "object",
            "required": ["name", "model", "upstream", "upstream_model", "format", "state", "in_flight"],
            "properties": {
                "name": STRING,
                "model": STRING,
                "upstream": STRING,
                "upstream_model": STRING,
                "format": STRING,
                "priority": INTEGER,
                "weight": {"type": "number"},
                "state": {"enum": ["healthy", "cooldown", "half_open"]},
                "in_flight": INTEGER,
                "consecutive_failures": INTEGER,
                "cooldowns": INTEGER,
                "cooldown_remaining_s": {"type": "number"},
                "probe_in_flight": BOOLEAN,
                "last_error": nullable(STRING),
                "last_error_age_s": nullable({"type": "number"}),
                "rpm": {"type": "object"},
                "tpm": {"type": "object"},
            },
        },
        "Upstreams": obj({"draining": BOOLEAN, "data": {"type": "array", "items": ref("Deployment")}}),
        "CustomerOverview": obj(
            {
                "account": obj(customer_account),
                "balance": ref("Money"),
                "plan": nullable(obj(customer_plan)),
                "subscription": nullable(ref("Subscription")),
                "quota": nullable(
                    obj(
                        {
                            "limit_tokens": INTEGER,
                            "used_tokens": INTEGER,
                            "remaining_tokens": {"type": "integer", "minimum": 0},
                            "period_start": TIME,
                            "period_end": TIME,
                        }
                    )
                ),
                "key_id": ID,
            }
        ),
        "Redeemed": obj(
            {
                "credit_added": ref("Money"),
                "balance": ref("Money"),
                "plan": nullable(obj({"id": ID, "name": STRING})),
                "subscription": nullable(ref("Subscription")),
            }
        ),
        "OpenAPI": {"type": "object", "required": ["openapi", "info", "paths"]},
        # -- request bodies --
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
        "KeyCreate": body(
            _key_fields(),
            allOf=[_at_most_one("expires_at", "expires_in_days")],
            example={"name": "ci-bot", "rpm_limit": 10},
        ),
        "KeyUpdate": body(
            _key_fields(),
            allOf=[_at_most_one("expires_at", "expires_in_days")],
            description="expires_at null removes the expiry.",
        ),
        "SubscriptionCreate": body(
            {"plan": {"anyOf": [{"type": "integer"}, text(100)], "description": "A plan id or exact name."}},
            required=("plan",),
            description="Subscribes from now, replacing the active subscription. Archived plans are refused.",
        ),
        "CreditCreate": body(
            {
                "usd": nullable(decimal(MAX_CREDIT_USD, 9, minimum=-MAX_CREDIT_USD, description="USD.")),
                "nanos": {
                    "type": ["integer", "null"],
                    "minimum": -MAX_CREDIT_NANOS,
                    "maximum": MAX_CREDIT_NANOS,
                },
                "reference": optional_text(200, "Free text such as an invoice number."),
                "kind": {"enum": ["topup", "adjustment"], "default": "topup"},
            },
            description=(
                "Exactly one of usd or nanos. A topup adds a positive amount; an adjustment "
                "is any non-zero amount, negative takes credit away."
            ),
            anyOf=[_given("usd"), _given("nanos")],
            allOf=[_at_most_one("usd", "nanos")],
            example={"usd": "10.00", "reference": "invoice 42"},
        ),
        "PlanCreate": body(
            _plan_fields(),
            required=("name",),
            allOf=[_at_most_one("included_credit_usd", "included_credit_nanos")],
            example={"name": "starter", "rpm": 60},
        ),
        "PlanUpdate": body(
            {
                **_plan_fields(),
                "archived": {"type": "boolean", "description": "false restores an archived plan."},
            },
            allOf=[_at_most_one("included_credit_usd", "included_credit_nanos")],
        ),
        "PriceSet": body(
            {
                "input": decimal(MAX_PER_MTOK, 6, description="USD per million input tokens."),
                "output": decimal(MAX_PER_MTOK, 6, description="USD per million output tokens."),
                "cache_write": nullable(
                    decimal(
                        MAX_PER_MTOK,
                        6,
                        description="USD per million cache-write tokens (default 1.25 x input).",
                    )
                ),
                "cache_read": nullable(
                    decimal(
                        MAX_PER_MTOK,
                        6,
                        description="USD per million cache-read tokens (default 0.1 x input).",
                    )
                ),
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
                "credit_nanos": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_CREDIT_NANOS},
                "plan": {
                    "anyOf": [{"type": "integer"}, text(100), {"type": "null"}],
                    "description": "A plan id or name the code subscribes to (not archived).",
                },
                "max_uses": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1},
                "expires_at": nullable(WHEN),
                "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 36500},
            },
            description="A code needs credit, a plan, or both. Each raw code is shown only once.",
            allOf=[_at_most_one("credit_usd", "credit_nanos"), _at_most_one("expires_at", "expires_in_days")],
            anyOf=[_given("credit_usd"), _given("credit_nanos"), _given("plan")],
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


def _key_fields() -> dict[str, Schema]:
    schema = {
        "name": text(200, 'Default "default".'),
        "expires_at": nullable(
            WHEN | {"description": "Must be in the future; give this or expires_in_days."}
        ),
        "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 36500},
        "allowed_models": nullable(PATTERNS),
        "rpm_limit": LIMIT,
        "tpm_limit": LIMIT,
        "concurrency_limit": LIMIT,
    }
    assert set(schema) == set(keys.KEY_FIELDS)
    return schema


def _plan_fields() -> dict[str, Schema]:
    schema = {
        "name": text(100),
        "description": optional_text(1000),
        "price_usd": decimal(10**9, 2, description="Price per period in USD (default 0)."),
        "period": {"enum": list(money.PERIODS), "default": "month"},
        "rpm": LIMIT,
        "tpm": LIMIT,
        "max_concurrency": LIMIT,
        "quota_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": fields.MAX_INT64},
        "included_credit_usd": nullable(
            decimal(MAX_CREDIT_USD, 9, description="Credit granted on subscribing.")
        ),
        "included_credit_nanos": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_CREDIT_NANOS},
        "allowed_models": PATTERNS,
        "price_multiplier": MULTIPLIER,
        "trial": BOOLEAN,
        "public": BOOLEAN,
    }
    assert set(schema) == set(plans.PLAN_FIELDS)
    return schema


# -- operations -----------------------------------------------------------------------------------

ERROR_DESCRIPTIONS = {
    400: "Invalid request: a field, query parameter or JSON body is wrong.",
    401: "Missing or invalid key.",
    403: "The key may not use this API.",
    404: "No such resource (or route).",
    409: "Conflicts with existing data.",
    413: "Body larger than 1 MiB.",
    429: "Too many failed authentications from this address; retry after retry-after seconds.",
}


def path_id(name: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "description": f"The {what}'s id.",
    }


def query(name: str, schema: Schema, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def _limit(default: int, maximum: int) -> Schema:
    return query("limit", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default})


#: An id in the query string; the id columns are 32-bit (the usage ledger's own ids are 64-bit).
QUERY_ID: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
LEDGER_ID: Schema = {"type": "integer", "minimum": 0, "maximum": fields.MAX_INT64}
BEFORE_ID = query("before_id", QUERY_ID, "Return entries with a smaller id (the next page).")


def operation(
    op_id: str,
    summary: str,
    ok: tuple[int, str],
    *,
    errors: tuple[int, ...] = (),
    params: list[Schema] | None = None,
    request: str | None = None,
    request_required: bool = True,
    security: list[dict[str, list[str]]] | None = None,
    tag: str,
    description: str | None = None,
    also: int | None = None,
) -> Schema:
    """``ok``: the success status and its schema; ``also``: a second success status, same schema."""
    status, schema = ok
    responses: dict[str, Any] = {
        str(code): {
            "description": "OK" if code == 200 else "Created",
            "content": {"application/json": {"schema": ref(schema)}},
        }
        for code in sorted({status, also or status})
    }
    codes_ = {*errors}
    if security != []:
        codes_ |= {401, 403, 429}
    if params and any(p["in"] == "query" for p in params):
        codes_.add(400)
    if params and any(p["in"] == "path" for p in params):
        codes_.add(404)
    if request:
        codes_ |= {400, 413}
    for code in sorted(codes_):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if request:
        op["requestBody"] = {
            "required": request_required,
            "content": {"application/json": {"schema": ref(request)}},
        }
    if security is not None:
        op["security"] = security
    return op


def _admin_paths() -> dict[str, dict[str, Schema]]:
    acc = path_id("account_id", "account")
    key = path_id("key_id", "API key")
    plan = path_id("plan_id", "plan")
    model = {
        "name": "model",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NON_BLANK},
        "description": "A model id or an fnmatch pattern such as claude-*; may contain slashes.",
    }
    time_range = [
        query("from", WHEN_QUERY, "Start of the range (inclusive)."),
        query("to", WHEN_QUERY, "End of the range (exclusive); a date includes that whole day."),
    ]
    filters = [
        query("account_id", QUERY_ID),
        query("key_id", QUERY_ID),
    ]
    a = "/admin/accounts/{account_id}"
    t_acc, t_keys, t_plans, t_bill, t_usage = "accounts", "keys", "plans", "billing", "usage"
    return {
        "/admin/accounts": {
            "get": operation(
                "listAccounts",
                "List accounts",
                (200, "AccountList"),
                params=[
                    _limit(100, 1000),
                    query("offset", {"type": "integer", "minimum": 0, "maximum": fields.MAX_INT64}),
                    query("include_disabled", {"type": "boolean", "default": True}),
                ],
                tag=t_acc,
            ),
            "post": operation(
                "createAccount", "Create an account", (201, "Account"), request="AccountCreate", tag=t_acc
            ),
        },
        a: {
            "get": operation(
                "getAccount",
                "An account with its active subscription and plan",
                (200, "AccountDetail"),
                params=[acc],
                tag=t_acc,
            ),
            "patch": operation(
                "updateAccount",
                "Rename, change kind or email, disable or enable an account",
                (200, "Account"),
                params=[acc],
                request="AccountUpdate",
                request_required=False,
                tag=t_acc,
            ),
            "delete": operation(
                "deleteAccount",
                "Delete an account with its keys, members, subscriptions and credit history",
                (200, "DeletedAccount"),
                params=[
                    acc,
                    query(
                        "force",
                        {"type": "boolean", "default": False},
                        "Required when the account has a balance or credit entries.",
                    ),
                ],
                errors=(409,),
                tag=t_acc,
            ),
        },
        f"{a}/members": {
            "get": operation(
                "listMembers", "Members of an account", (200, "MemberList"), params=[acc], tag=t_acc
            ),
            "post": operation(
                "addMember",
                "Add a member (201), or change an existing member's role (200)",
                (201, "Member"),
                also=200,
                params=[acc],
                request="MemberAdd",
                errors=(409,),
                tag=t_acc,
            ),
        },
        f"{a}/members/{{user_id}}": {
            "delete": operation(
                "removeMember",
                "Remove a member (the user record stays)",
                (200, "RemovedMember"),
                params=[acc, path_id("user_id", "user")],
                tag=t_acc,
            ),
        },
        f"{a}/keys": {
            "get": operation(
                "listAccountKeys", "The account's API keys", (200, "ApiKeyList"), params=[acc], tag=t_keys
            ),
            "post": operation(
                "createAccountKey",
                "Create an API key for the account (the raw key is shown once)",
                (201, "CreatedApiKey"),
                params=[acc],
                request="KeyCreate",
                request_required=False,
                errors=(409,),
                tag=t_keys,
            ),
        },
        f"{a}/subscriptions": {
            "get": operation(
                "listSubscriptions",
                "Every subscription of the account, newest first",
                (200, "SubscriptionList"),
                params=[acc],
                tag=t_bill,
            ),
        },
        f"{a}/subscription": {
            "post": operation(
                "subscribe",
                "Subscribe the account to a plan from now on",
                (201, "Subscribed"),
                params=[acc],
                request="SubscriptionCreate",
                errors=(409,),
                tag=t_bill,
            ),
            "delete": operation(
                "cancelSubscription",
                "End the account's active subscription now",
                (200, "Subscription"),
                params=[acc],
                tag=t_bill,
            ),
        },
        f"{a}/credit": {
            "get": operation(
                "listCredit",
                "The account's credit entries, newest first",
                (200, "CreditEntryList"),
                params=[acc, _limit(50, 1000), BEFORE_ID],
                tag=t_bill,
            ),
            "post": operation(
                "addCredit",
                "Top up (or adjust) the account's balance",
                (201, "CreditAdded"),
                params=[acc],
                request="CreditCreate",
                errors=(409,),
                tag=t_bill,
            ),
        },
        "/admin/keys": {
            "get": operation(
                "listKeys",
                "Every API key (operator keys too), or one account's",
                (200, "ApiKeyList"),
                params=[query("account_id", QUERY_ID)],
                errors=(404,),
                tag=t_keys,
            ),
        },
        "/admin/keys/{key_id}": {
            "get": operation("getKey", "An API key", (200, "ApiKey"), params=[key], tag=t_keys),
            "patch": operation(
                "updateKey",
                "Rename a key, change its expiry, models or limits",
                (200, "ApiKey"),
                params=[key],
                request="KeyUpdate",
                request_required=False,
                tag=t_keys,
            ),
            "delete": operation(
                "revokeKey", "Revoke a key (idempotent)", (200, "ApiKey"), params=[key], tag=t_keys
            ),
        },
        "/admin/plans": {
            "get": operation(
                "listPlans",
                "List plans",
                (200, "PlanList"),
                params=[query("include_archived", {"type": "boolean", "default": False})],
                tag=t_plans,
            ),
            "post": operation(
                "createPlan", "Create a plan", (201, "Plan"), request="PlanCreate", errors=(409,), tag=t_plans
            ),
        },
        "/admin/plans/{plan_id}": {
            "get": operation("getPlan", "A plan", (200, "Plan"), params=[plan], tag=t_plans),
            "patch": operation(
                "updatePlan",
                "Change a plan (current subscribers too), or archive / restore it",
                (200, "Plan"),
                params=[plan],
                request="PlanUpdate",
                request_required=False,
                errors=(409,),
                tag=t_plans,
            ),
            "delete": operation(
                "deletePlan",
                "Delete an unused plan; archive a plan that is referenced",
                (200, "DeletedPlan"),
                params=[plan],
                tag=t_plans,
            ),
        },
        "/admin/prices": {
            "get": operation("listPrices", "Model prices", (200, "ModelPriceList"), tag=t_bill),
        },
        "/admin/prices/{model}": {
            "get": operation("getPrice", "A model's price", (200, "ModelPrice"), params=[model], tag=t_bill),
            "put": operation(
                "setPrice",
                "Create (201) or replace (200) a model's price",
                (201, "ModelPrice"),
                also=200,
                params=[model],
                request="PriceSet",
                errors=(409,),
                tag=t_bill,
            ),
            "delete": operation(
                "deletePrice",
                "Delete a model's price",
                (200, "DeletedModelPrice"),
                params=[model],
                tag=t_bill,
            ),
        },
        "/admin/codes": {
            "get": operation(
                "listCodes",
                "Redeem codes, newest first",
                (200, "RedeemCodeList"),
                params=[_limit(100, 1000), BEFORE_ID],
                tag=t_bill,
            ),
            "post": operation(
                "createCodes",
                "Create redeem codes (the raw codes are shown once)",
                (201, "CreatedRedeemCodes"),
                request="CodesCreate",
                errors=(404,),
                tag=t_bill,
            ),
        },
        "/admin/codes/{code_id}": {
            "delete": operation(
                "deleteCode",
                "Delete a redeem code (redemptions made stay)",
                (200, "DeletedRedeemCode"),
                params=[path_id("code_id", "redeem code")],
                tag=t_bill,
            ),
        },
        "/admin/usage": {
            "get": operation(
                "usage",
                "Requests, tokens and cost in a time range, optionally grouped",
                (200, "UsageReport"),
                params=[
                    query("group_by", {"enum": list(usage.GROUPS)}),
                    *time_range,
                    *filters,
                    query("model", STRING),
                ],
                tag=t_usage,
            ),
        },
        "/admin/usage/requests": {
            "get": operation(
                "usageRequests",
                "Ledger rows, newest first",
                (200, "UsageRecordPage"),
                params=[_limit(50, 500), *filters, query("before_id", LEDGER_ID)],
                tag=t_usage,
            ),
        },
        "/admin/upstreams": {
            "get": operation(
                "upstreams",
                "Every deployment's health, load and own limits",
                (200, "Upstreams"),
                tag="gateway",
            ),
        },
        "/admin/openapi.json": {
            "get": operation(
                "adminOpenAPI",
                "This document: the admin API and the customer API",
                (200, "OpenAPI"),
                tag="gateway",
            ),
        },
    }


def _customer_paths() -> dict[str, dict[str, Schema]]:
    sec = CUSTOMER_SECURITY
    tag = "account"
    return {
        "/v1/account": {
            "get": operation(
                "accountOverview",
                "The caller's account, balance, plan, subscription and quota",
                (200, "CustomerOverview"),
                security=sec,
                tag=tag,
            ),
        },
        "/v1/account/usage": {
            "get": operation(
                "accountUsage",
                "The account's requests, tokens and cost in a time range, optionally grouped",
                (200, "CustomerUsageReport"),
                params=[
                    query("group_by", {"enum": ["day", "model", "key"]}),
                    query("from", WHEN_QUERY, "Start of the range (inclusive)."),
                    query("to", WHEN_QUERY, "End of the range (exclusive); a date includes that whole day."),
                ],
                security=sec,
                tag=tag,
            ),
        },
        "/v1/account/requests": {
            "get": operation(
                "accountRequests",
                "The account's ledger rows, newest first (no prompts, no upstream names)",
                (200, "CustomerUsageRecordPage"),
                params=[_limit(50, 500), query("before_id", LEDGER_ID)],
                security=sec,
                tag=tag,
            ),
        },
        "/v1/account/keys": {
            "get": operation(
                "accountListKeys", "The account's API keys", (200, "ApiKeyList"), security=sec, tag=tag
            ),
            "post": operation(
                "accountCreateKey",
                "Create a key; its models and limits can only narrow the plan's",
                (201, "CreatedApiKey"),
                request="KeyCreate",
                request_required=False,
                errors=(409,),
                security=sec,
                tag=tag,
            ),
        },
        "/v1/account/keys/{key_id}": {
            "delete": operation(
                "accountRevokeKey",
                "Revoke one of the account's keys (idempotent)",
                (200, "ApiKey"),
                params=[path_id("key_id", "API key")],
                security=sec,
                tag=tag,
            ),
        },
        "/v1/account/redeem": {
            "post": operation(
                "accountRedeem",
                "Redeem a code: its credit and/or its plan",
                (200, "Redeemed"),
                request="Redeem",
                errors=(404, 409),
                security=sec,
                tag=tag,
            ),
        },
        "/v1/account/openapi.json": {
            "get": operation(
                "accountOpenAPI",
                "This document (the customer API only); no key needed",
                (200, "OpenAPI"),
                security=[],
                tag=tag,
            ),
        },
    }


def _error_responses() -> dict[str, Schema]:
    return {
        f"E{code}": {
            "description": text_,
            "headers": {
                "request-id": {"schema": {"type": "string"}, "description": "Also in x-request-id."},
                **(
                    {"retry-after": {"schema": {"type": "string"}, "description": "Seconds."}}
                    if code == 429
                    else {}
                ),
            },
            "content": {"application/json": {"schema": ref("Error")}},
        }
        for code, text_ in ERROR_DESCRIPTIONS.items()
    }


def _security_schemes() -> dict[str, Schema]:
    return {
        "adminBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The admin key (CLAUDESTORE_ADMIN_KEY or admin.api_key) as a bearer token.",
        },
        "adminApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "The admin key.",
        },
        "customerApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "A customer API key (sk-cs-...) that belongs to an account.",
        },
        "customerBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A customer API key (sk-cs-...) as a bearer token.",
        },
    }


def _referenced(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str):
            found.add(target.rsplit("/", 1)[-1])
        for value in node.values():
            _referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, found)


@functools.cache
def _build(include_admin: bool) -> Schema:
    paths = {**(_admin_paths() if include_admin else {}), **_customer_paths()}
    schemas = _components()
    errors = _error_responses()
    # Only the components the paths use (transitively): the customer document shows no admin schemas.
    used: set[str] = set()
    _referenced(paths, used)
    while True:
        before = len(used)
        _referenced([schemas[n] for n in used if n in schemas], used)
        _referenced([errors[n] for n in used if n in errors], used)
        if len(used) == before:
            break
    title = "ClaudeStore admin and account API" if include_admin else "ClaudeStore account API"
    description = (
        "The operator's admin API under /admin (admin key) and the customer's own API under "
        "/v1/account (the customer's API key). JSON in and out; every error is "
        '{"type": "error", "error": {"type", "message"}, "request_id"}, and every response '
        "carries request-id and x-request-id headers."
    )
    schemes = _security_schemes()
    if not include_admin:
        schemes = {k: v for k, v in schemes.items() if k.startswith("customer")}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": _version(), "description": description},
        "security": ADMIN_SECURITY if include_admin else CUSTOMER_SECURITY,
        "paths": paths,
        "components": {
            "schemas": {n: s for n, s in schemas.items() if n in used},
            "responses": {n: r for n, r in errors.items() if n in used},
            "securitySchemes": schemes,
        },
    }


def document(*, include_admin: bool = True) -> Schema:
    """The document: both APIs, or with ``include_admin=False`` the customer API only. A fresh
    copy each call (callers may change it)."""
    return copy.deepcopy(_build(include_admin))
