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

The modules: ``schemas`` (JSON Schema helpers and shared schemas), ``response_schemas`` and
``usage_schemas`` (what the serializers return), ``request_schemas`` (the bodies the services
take), ``operations`` (parameters, error responses, security and the ``Operations`` builder),
``admin_paths`` and ``account_paths`` (the two APIs' paths); this one puts the document together.
"""

from __future__ import annotations

import copy
import functools
from importlib import metadata
from typing import Any

from claudestore.api.openapi.account_paths import account_paths
from claudestore.api.openapi.admin_paths import admin_paths
from claudestore.api.openapi.operations import (
    ADMIN_SECURITY,
    CUSTOMER_SECURITY,
    error_responses,
    security_schemes,
)
from claudestore.api.openapi.request_schemas import account_requests, billing_requests
from claudestore.api.openapi.response_schemas import (
    customer_schemas,
    error_schema,
    gateway_schemas,
    list_schemas,
    resource_schemas,
)
from claudestore.api.openapi.schemas import Schema
from claudestore.api.openapi.usage_schemas import usage_schemas

__all__ = ["document"]


def _version() -> str:
    try:
        return metadata.version("claudestore")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def _components() -> dict[str, Schema]:
    return {
        "Error": error_schema(),
        **resource_schemas(),
        **usage_schemas(),
        **list_schemas(),
        **gateway_schemas(),
        **customer_schemas(),
        "OpenAPI": {"type": "object", "required": ["openapi", "info", "paths"]},
        # -- request bodies --
        **account_requests(),
        **billing_requests(),
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
    paths = {**(admin_paths() if include_admin else {}), **account_paths()}
    schemas = _components()
    errors = error_responses()
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
    schemes = security_schemes()
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
