"""The paths of the customer API (``/v1/account``, the customer's own key; ``api/account.py``)."""

from __future__ import annotations

from claudestore.api.openapi.operations import (
    CUSTOMER_SECURITY,
    LEDGER_ID,
    Operations,
    limit,
    path_id,
    query,
    time_range,
)
from claudestore.api.openapi.schemas import Schema


def account_paths() -> dict[str, dict[str, Schema]]:
    customer = Operations("account", security=CUSTOMER_SECURITY)
    return {
        "/v1/account": {
            "get": customer.ok(
                "accountOverview",
                "The caller's account, balance, plan, subscription and quota",
                "CustomerOverview",
            ),
        },
        "/v1/account/usage": {
            "get": customer.ok(
                "accountUsage",
                "The account's requests, tokens and cost in a time range, optionally grouped",
                "CustomerUsageReport",
                params=[query("group_by", {"enum": ["day", "model", "key"]}), *time_range()],
            ),
        },
        "/v1/account/requests": {
            "get": customer.ok(
                "accountRequests",
                "The account's ledger rows, newest first (no prompts, no upstream names)",
                "CustomerUsageRecordPage",
                params=[limit(50, 500), query("before_id", LEDGER_ID)],
            ),
        },
        "/v1/account/keys": {
            "get": customer.ok("accountListKeys", "The account's API keys", "ApiKeyList"),
            "post": customer.created(
                "accountCreateKey",
                "Create a key; its models and limits can only narrow the plan's",
                "CreatedApiKey",
                "KeyCreate",
                request_required=False,
                errors=(409,),
            ),
        },
        "/v1/account/keys/{key_id}": {
            "delete": customer.under(path_id("key_id", "API key")).ok(
                "accountRevokeKey", "Revoke one of the account's keys (idempotent)", "ApiKey"
            ),
        },
        "/v1/account/redeem": {
            "post": customer.ok(
                "accountRedeem",
                "Redeem a code: its credit and/or its plan",
                "Redeemed",
                request="Redeem",
                errors=(404, 409),
            ),
        },
        "/v1/account/openapi.json": {
            "get": customer.ok(
                "accountOpenAPI",
                "This document (the customer API only); no key needed",
                "OpenAPI",
                security=[],
            ),
        },
    }
