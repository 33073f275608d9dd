"""The paths of the admin API (``/admin``, the admin key; ``api/admin.py``)."""

from __future__ import annotations

from claudestore.accounts import fields, usage
from claudestore.api.openapi.operations import (
    BEFORE_ID,
    LEDGER_ID,
    QUERY_ID,
    Operations,
    limit,
    path_id,
    query,
    time_range,
)
from claudestore.api.openapi.schemas import NON_BLANK, STRING, Schema

MODEL: Schema = {
    "name": "model",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NON_BLANK},
    "description": "A model id or an fnmatch pattern such as claude-*; may contain slashes.",
}
ACCOUNT = "/admin/accounts/{account_id}"


def admin_paths() -> dict[str, dict[str, Schema]]:
    return {**_account_paths(), **_key_and_plan_paths(), **_billing_paths(), **_usage_and_gateway_paths()}


def _account_paths() -> dict[str, dict[str, Schema]]:
    accounts = Operations("accounts")
    account = accounts.under(path_id("account_id", "account"))
    keys = Operations("keys").under(*account.params)
    billing = Operations("billing").under(*account.params)
    force = query(
        "force",
        {"type": "boolean", "default": False},
        "Required when the account has a balance or credit entries.",
    )
    return {
        "/admin/accounts": {
            "get": accounts.ok(
                "listAccounts",
                "List accounts",
                "AccountList",
                params=[
                    limit(100, 1000),
                    query("offset", {"type": "integer", "minimum": 0, "maximum": fields.MAX_INT64}),
                    query("include_disabled", {"type": "boolean", "default": True}),
                ],
            ),
            "post": accounts.created("createAccount", "Create an account", "Account", "AccountCreate"),
        },
        ACCOUNT: {
            "get": account.ok(
                "getAccount", "An account with its active subscription and plan", "AccountDetail"
            ),
            "patch": account.update(
                "updateAccount",
                "Rename, change kind or email, disable or enable an account",
                "Account",
                "AccountUpdate",
            ),
            "delete": account.ok(
                "deleteAccount",
                "Delete an account with its keys, members, subscriptions and credit history",
                "DeletedAccount",
                params=[force],
                errors=(409,),
            ),
        },
        f"{ACCOUNT}/members": {
            "get": account.ok("listMembers", "Members of an account", "MemberList"),
            "post": account.created(
                "addMember",
                "Add a member (201), or change an existing member's role (200)",
                "Member",
                "MemberAdd",
                also=200,
                errors=(409,),
            ),
        },
        f"{ACCOUNT}/members/{{user_id}}": {
            "delete": account.ok(
                "removeMember",
                "Remove a member (the user record stays)",
                "RemovedMember",
                params=[path_id("user_id", "user")],
            ),
        },
        f"{ACCOUNT}/keys": {
            "get": keys.ok("listAccountKeys", "The account's API keys", "ApiKeyList"),
            "post": keys.created(
                "createAccountKey",
                "Create an API key for the account (the raw key is shown once)",
                "CreatedApiKey",
                "KeyCreate",
                request_required=False,
                errors=(409,),
            ),
        },
        f"{ACCOUNT}/subscriptions": {
            "get": billing.ok(
                "listSubscriptions", "Every subscription of the account, newest first", "SubscriptionList"
            ),
        },
        f"{ACCOUNT}/subscription": {
            "post": billing.created(
                "subscribe",
                "Subscribe the account to a plan from now on",
                "Subscribed",
                "SubscriptionCreate",
                errors=(409,),
            ),
            "delete": billing.ok(
                "cancelSubscription", "End the account's active subscription now", "Subscription"
            ),
        },
        f"{ACCOUNT}/credit": {
            "get": billing.ok(
                "listCredit",
                "The account's credit entries, newest first",
                "CreditEntryList",
                params=[limit(50, 1000), BEFORE_ID],
            ),
            "post": billing.created(
                "addCredit",
                "Top up (or adjust) the account's balance",
                "CreditAdded",
                "CreditCreate",
                errors=(409,),
            ),
        },
    }


def _key_and_plan_paths() -> dict[str, dict[str, Schema]]:
    keys = Operations("keys")
    key = keys.under(path_id("key_id", "API key"))
    plans = Operations("plans")
    plan = plans.under(path_id("plan_id", "plan"))
    return {
        "/admin/keys": {
            "get": keys.ok(
                "listKeys",
                "Every API key (operator keys too), or one account's",
                "ApiKeyList",
                params=[query("account_id", QUERY_ID)],
                errors=(404,),
            ),
        },
        "/admin/keys/{key_id}": {
            "get": key.ok("getKey", "An API key", "ApiKey"),
            "patch": key.update(
                "updateKey", "Rename a key, change its expiry, models or limits", "ApiKey", "KeyUpdate"
            ),
            "delete": key.ok("revokeKey", "Revoke a key (idempotent)", "ApiKey"),
        },
        "/admin/plans": {
            "get": plans.ok(
                "listPlans",
                "List plans",
                "PlanList",
                params=[query("include_archived", {"type": "boolean", "default": False})],
            ),
            "post": plans.created("createPlan", "Create a plan", "Plan", "PlanCreate", errors=(409,)),
        },
        "/admin/plans/{plan_id}": {
            "get": plan.ok("getPlan", "A plan", "Plan"),
            "patch": plan.update(
                "updatePlan",
                "Change a plan (current subscribers too), or archive / restore it",
                "Plan",
                "PlanUpdate",
                errors=(409,),
            ),
            "delete": plan.ok(
                "deletePlan", "Delete an unused plan; archive a plan that is referenced", "DeletedPlan"
            ),
        },
    }


def _billing_paths() -> dict[str, dict[str, Schema]]:
    billing = Operations("billing")
    price = billing.under(MODEL)
    return {
        "/admin/prices": {
            "get": billing.ok("listPrices", "Model prices", "ModelPriceList"),
        },
        "/admin/prices/{model}": {
            "get": price.ok("getPrice", "A model's price", "ModelPrice"),
            "put": price.created(
                "setPrice",
                "Create (201) or replace (200) a model's price",
                "ModelPrice",
                "PriceSet",
                also=200,
                errors=(409,),
            ),
            "delete": price.ok("deletePrice", "Delete a model's price", "DeletedModelPrice"),
        },
        "/admin/codes": {
            "get": billing.ok(
                "listCodes",
                "Redeem codes, newest first",
                "RedeemCodeList",
                params=[limit(100, 1000), BEFORE_ID],
            ),
            "post": billing.created(
                "createCodes",
                "Create redeem codes (the raw codes are shown once)",
                "CreatedRedeemCodes",
                "CodesCreate",
                errors=(404,),
            ),
        },
        "/admin/codes/{code_id}": {
            "delete": billing.ok(
                "deleteCode",
                "Delete a redeem code (redemptions made stay)",
                "DeletedRedeemCode",
                params=[path_id("code_id", "redeem code")],
            ),
        },
    }


def _usage_and_gateway_paths() -> dict[str, dict[str, Schema]]:
    usage_ops = Operations("usage")
    gateway = Operations("gateway")
    filters = [query("account_id", QUERY_ID), query("key_id", QUERY_ID)]
    return {
        "/admin/usage": {
            "get": usage_ops.ok(
                "usage",
                "Requests, tokens and cost in a time range, optionally grouped",
                "UsageReport",
                params=[
                    query("group_by", {"enum": list(usage.GROUPS)}),
                    *time_range(),
                    *filters,
                    query("model", STRING),
                ],
            ),
        },
        "/admin/usage/requests": {
            "get": usage_ops.ok(
                "usageRequests",
                "Ledger rows, newest first",
                "UsageRecordPage",
                params=[limit(50, 500), *filters, query("before_id", LEDGER_ID)],
            ),
        },
        "/admin/upstreams": {
            "get": gateway.ok("upstreams", "Every deployment's health, load and own limits", "Upstreams"),
        },
        "/admin/openapi.json": {
            "get": gateway.ok("adminOpenAPI", "This document: the admin API and the customer API", "OpenAPI"),
        },
    }
