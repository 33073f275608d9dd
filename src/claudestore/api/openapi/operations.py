"""Operations: their parameters, their responses (success and errors) and a builder for a group.

An operation lists the error responses it can give, derived from what it takes: every
authenticated one 401, 403 and 429; one with query parameters 400; one with path parameters
404; one with a body 400 and 413; plus the ones given (409 for a conflict...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from claudestore.accounts import fields
from claudestore.api.openapi.schemas import WHEN_QUERY, Schema, ref

Security = list[dict[str, list[str]]]

ADMIN_SECURITY: Security = [{"adminBearer": []}, {"adminApiKey": []}]
CUSTOMER_SECURITY: Security = [{"customerApiKey": []}, {"customerBearer": []}]
MAX_ID = fields.MAX_INT32

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


def limit(default: int, maximum: int) -> Schema:
    return query("limit", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default})


def time_range() -> list[Schema]:
    """``from`` and ``to`` of a usage report."""
    return [
        query("from", WHEN_QUERY, "Start of the range (inclusive)."),
        query("to", WHEN_QUERY, "End of the range (exclusive); a date includes that whole day."),
    ]


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
    security: Security | None = None,
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


@dataclasses.dataclass(frozen=True)
class Operations:
    """A group of operations with the same tag, leading parameters and security.

    ``ok`` answers 200; ``created`` takes a body and answers 201; ``update`` takes a body whose
    every field may be left out (a PATCH) and answers 200. Each takes ``operation``'s options;
    ``params`` come after the group's own.
    """

    tag: str
    params: tuple[Schema, ...] = ()
    security: Security | None = None

    def under(self, *params: Schema) -> Operations:
        """The same group below a path that takes ``params`` too."""
        return dataclasses.replace(self, params=(*self.params, *params))

    def ok(self, op_id: str, summary: str, schema: str, **options: Any) -> Schema:
        return self._operation(op_id, summary, (200, schema), **options)

    def created(self, op_id: str, summary: str, schema: str, request: str, **options: Any) -> Schema:
        return self._operation(op_id, summary, (201, schema), request=request, **options)

    def update(self, op_id: str, summary: str, schema: str, request: str, **options: Any) -> Schema:
        return self._operation(
            op_id, summary, (200, schema), request=request, request_required=False, **options
        )

    def _operation(
        self, op_id: str, summary: str, ok: tuple[int, str], *, params: Sequence[Schema] = (), **options: Any
    ) -> Schema:
        options.setdefault("security", self.security)
        all_params = [*self.params, *params]
        return operation(op_id, summary, ok, params=all_params or None, tag=self.tag, **options)


def error_responses() -> dict[str, Schema]:
    """The components' responses ``E400``...: the error envelope with its headers."""
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


def security_schemes() -> dict[str, Schema]:
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
