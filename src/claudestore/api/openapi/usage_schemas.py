"""The usage responses: reports (totals, optionally grouped) and pages of ledger rows."""

from __future__ import annotations

from claudestore.api.openapi.schemas import (
    BOOLEAN,
    DECIMAL_STRING,
    ID,
    INTEGER,
    STRING,
    TIME,
    Schema,
    array_of,
    nullable,
    obj,
    ref,
)

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
            "data": array_of(row),
            "total": ref("UsageTotal"),
        }
    )


def _page(item: str) -> Schema:
    return obj({"data": array_of(item), "has_more": BOOLEAN, "next_before_id": nullable(ID)})


def usage_schemas() -> dict[str, Schema]:
    customer_groups = ("day", "model", "key_id")
    return {
        "UsageTotal": obj(USAGE_ROW_FIELDS),
        "UsageGroup": obj(
            {**USAGE_GROUPS, **USAGE_ROW_FIELDS},
            optional=tuple(USAGE_GROUPS),
            maxProperties=len(USAGE_ROW_FIELDS) + 1,
            description="A group's totals; the group is named by day, model, key_id or account_id.",
        ),
        "CustomerUsageGroup": obj(
            {name: USAGE_GROUPS[name] for name in customer_groups} | USAGE_ROW_FIELDS,
            optional=customer_groups,
            maxProperties=len(USAGE_ROW_FIELDS) + 1,
        ),
        "UsageReport": _usage_report("UsageGroup"),
        "CustomerUsageReport": _usage_report("CustomerUsageGroup"),
        "UsageRecord": obj(RECORD_FIELDS),
        "CustomerUsageRecord": obj(_customer_record_fields()),
        "UsageRecordPage": _page("UsageRecord"),
        "CustomerUsageRecordPage": _page("CustomerUsageRecord"),
    }
