"""The response objects: exactly what the serializers (``api/serialize.py``) return."""

from __future__ import annotations

from claudestore.accounts import accounts, credit, money
from claudestore.api.openapi.schemas import (
    BOOLEAN,
    DECIMAL_STRING,
    ID,
    INTEGER,
    STRING,
    TIME,
    Schema,
    array_of,
    const,
    nullable,
    obj,
    ref,
)
from claudestore.core.errors import ERROR_KINDS

MONEY = obj(
    {
        "nanos": {"type": "integer", "description": "Exact amount in nano-dollars (1e-9 USD)."},
        "usd": {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2,9}$", "description": "The same in USD."},
    }
)
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
#: The lists: ``{"data": [...]}`` of one kind of object.
LISTS = {
    "AccountList": "Account",
    "MemberList": "Member",
    "ApiKeyList": "ApiKey",
    "PlanList": "Plan",
    "SubscriptionList": "Subscription",
    "CreditEntryList": "CreditEntry",
    "ModelPriceList": "ModelPrice",
    "RedeemCodeList": "RedeemCode",
}


def _deleted(fields: dict[str, Schema]) -> Schema:
    """The object as it was, with ``"deleted": true``."""
    return obj({**fields, "deleted": const(True)})


def error_schema() -> Schema:
    return obj(
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
    )


def resource_schemas() -> dict[str, Schema]:
    """Accounts, members, keys, plans, subscriptions, credit, prices and codes."""
    return {
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
        "DeletedModelPrice": _deleted(PRICE_FIELDS),
        "RedeemCode": obj(CODE_FIELDS),
        "CreatedRedeemCode": obj(
            {**CODE_FIELDS, "code": {"type": "string", "pattern": "^CS-", "description": "Shown only once."}}
        ),
        "CreatedRedeemCodes": obj({"data": array_of("CreatedRedeemCode"), "note": STRING}),
        "DeletedRedeemCode": _deleted(CODE_FIELDS),
    }


def list_schemas() -> dict[str, Schema]:
    return {name: obj({"data": array_of(item)}) for name, item in LISTS.items()}


def gateway_schemas() -> dict[str, Schema]:
    """The gateway's own: its deployments (``/admin/upstreams``) and the OpenAPI document."""
    return {
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
        "Upstreams": obj({"draining": BOOLEAN, "data": array_of("Deployment")}),
    }


def customer_schemas() -> dict[str, Schema]:
    """What only the customer API returns: its overview and a redemption."""
    customer_plan = {k: v for k, v in PLAN_FIELDS.items() if k not in ("public", "archived_at", "created_at")}
    customer_account = {k: v for k, v in ACCOUNT_FIELDS.items() if k != "balance"}
    return {
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
    }
