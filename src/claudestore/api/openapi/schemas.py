"""JSON Schema helpers and the small schemas that requests, responses and parameters share."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


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


def array_of(item: str) -> Schema:
    """An array of the component schema ``item``."""
    return {"type": "array", "items": ref(item)}


def body(properties: dict[str, Schema], *, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    """A request body: a closed object (the services reject unknown fields)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def given(name: str) -> Schema:
    """``name`` is present and not null (the services treat null as absent)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def at_most_one(a: str, b: str) -> Schema:
    """Not both ``a`` and ``b`` given (null counts as absent): the services refuse both."""
    return {"not": {"allOf": [given(a), given(b)]}}


def const(value: Any) -> Schema:
    return {"const": value}


INTEGER: Schema = {"type": "integer"}
ID: Schema = {"type": "integer", "minimum": 1}
BOOLEAN: Schema = {"type": "boolean"}
STRING: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
# Text the services trim, then require non-empty and free of NUL (PostgreSQL's text cannot hold it).
NOT_NUL = "[^\\x00]*"
#: Python's whitespace (what str.strip() removes), spelled out because JSON Schema's ``\\s``
#: (ECMA-262) differs: it lacks U+001C..U+001F and U+0085, and has U+FEFF.
WS = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
SPACES = f"[{WS}]*"
NON_BLANK = f"^{NOT_NUL}[^{WS}\\x00]{NOT_NUL}$"


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
    schema: Schema = {"type": ["string", "null"], "maxLength": max_len, "pattern": f"^{NOT_NUL}$"}
    if description:
        schema["description"] = description
    return schema


WHEN: Schema = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
    "description": "An ISO 8601 time (2026-01-31T12:00:00Z) or date (midnight UTC); no offset means UTC.",
}
WHEN_QUERY: Schema = {
    **WHEN,
    "anyOf": [*WHEN["anyOf"], {"const": ""}],
    "description": WHEN["description"] + " Empty: no bound.",
}
DECIMAL_STRING: Schema = {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"}
