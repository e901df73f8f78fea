"""The vocabulary the OpenAPI modules build their schemas and operations with."""

from __future__ import annotations

from typing import Any

from .. import paging, vocab

VERSION = "1.0.0"

READ = list(vocab.READ)
OPERATE = list(vocab.OPERATE)
WRITE = list(vocab.WRITE)
AUDIT = list(vocab.AUDIT)
DEVICE = [vocab.ROLE_DEVICE]
ALARM_TYPES = list(vocab.ALARM_TYPES)
ALARM_STATUSES = list(vocab.ALARM_STATUSES)
COMMANDS = list(vocab.COMMANDS)
COMMAND_STATUSES = list(vocab.COMMAND_STATUSES)
ROLES = list(vocab.ROLES)
AUDIT_ACTIONS = list(vocab.AUDIT_ACTIONS)

#: operation tags
ADMIN, DEVICE_PLANE, OPERATIONS = ["admin"], ["device"], ["operations"]

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    kind = out.get("type")
    out["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    return out


def obj(required: list[str], properties: dict[str, Any], extra: bool = True, **more: Any) -> dict[str, Any]:
    """An object schema. Fields may be added (the contract allows optional additions), so objects stay
    open unless ``extra=False``; the server ignores request fields it does not read."""
    out: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
    if not extra:
        out["additionalProperties"] = False
    out.update(more)
    return out


TIME = {"type": "string", "format": "date-time", "description": "RFC 3339 UTC"}
#: a time a client sends: RFC 3339 with any offset, that exists in UTC (years 0001 to 9999)
TIME_IN = {"type": "string", "format": "date-time", "maxLength": 64,
           "description": "RFC 3339 with Z or an offset; the instant must lie between 0001-01-01T00:00:00Z and "
                          "9999-12-31T23:59:59.999999Z (0001-01-01T00:00:00+01:00 does not)"}
#: a time a device measured: refused when before 2000 (a clock never set) or ahead of the server's clock
DEVICE_TIME = {"type": "string", "format": "device-time", "maxLength": 64,
               "description": "RFC 3339 (format date-time) with Z or an offset, from 2000-01-01T00:00:00Z up to "
                              "5 minutes after the server's clock"}
IMEI = {"type": "string", "pattern": "^[0-9]{15}$", "format": "imei",
        "description": "15 digits; the last is the Luhn check digit of the first 14"}
#: what ``models.validate_file_name`` accepts: 1-128 of [A-Za-z0-9._-], a letter or digit first, no ".."
FILE_NAME = {"type": "string", "minLength": 1, "maxLength": 128,
             "pattern": "^[A-Za-z0-9](\\.?[A-Za-z0-9_-])*\\.?$",
             "description": "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit, without '..'"}
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
NUM = {"type": "number"}
LAT = {"type": "number", "minimum": -90, "maximum": 90}
LON = {"type": "number", "minimum": -180, "maximum": 180}
#: an alarm type as a device or a search may spell it: any case (a pattern, since JSON Schema has no
#: case-insensitive enum)
ALARM_TYPE_ANY_CASE = {"type": "string", "pattern": "^(" + "|".join(
    "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in t) for t in vocab.ALARM_TYPES) + ")$",
    "description": "case-insensitive: " + ", ".join(vocab.ALARM_TYPES)}


def page_of(item: str) -> dict[str, Any]:
    return obj(["items", "next_cursor"], {
        "items": {"type": "array", "items": ref(item)},
        "next_cursor": {"type": ["string", "null"], "description": "pass as ?cursor= for the next page; null on the last"},
    })


ERROR_RESPONSE = {"description": "error", "content": {JSON: {"schema": ref("Error")}}}
#: a 429 of a rate-limited call: the error body and when to try again
RATE_LIMITED = {"description": "rate limited", "content": {JSON: {"schema": ref("Error")}},
                "headers": {"Retry-After": {"description": "seconds until an attempt is admitted again",
                                            "schema": {"type": "integer", "minimum": 1}}}}
ERROR_TEXT = {400: "invalid argument or JSON", 401: "missing, invalid or expired token",
              403: "the token's role may not make this call", 404: "not found", 409: "conflict",
              413: "body too large", 429: "rate limited", 503: "a store is unavailable"}


def json_response(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def param(name: str, where: str, schema: dict[str, Any], description: str = "", required: bool = False,
          explode: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if description:
        out["description"] = description
    if explode is not None:
        out["style"], out["explode"] = "form", explode
    return out


LIMIT = param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
CURSOR = param("cursor", "query", {"type": "string", "pattern": paging.CURSOR_PATTERN, "maxLength": paging.MAX_CURSOR},
               "next_cursor of the previous page of the same list, unchanged (opaque; any other value is 400)")
PATH_IMEI = param("imei", "path", IMEI)
PATH_NAME = param("name", "path", FILE_NAME)
PATH_ALARM = param("alarm_id", "path", UUID, "the alarm's id")
SINCE = param("since", "query", TIME_IN, "inclusive lower bound of ts (RFC 3339)")
UNTIL = param("until", "query", TIME_IN, "exclusive upper bound of ts (RFC 3339)")
IMEIS = param("imei", "query", {"type": "array", "items": IMEI}, "repeatable (or comma-separated)", explode=True)


def op(summary: str, roles: list[str] | None, responses: dict[int | str, Any], *, body: dict[str, Any] | None = None,
       body_type: str = JSON, parameters: list[dict[str, Any]] | None = None, errors: tuple[int, ...] = (),
       op_id: str, tags: list[str], description: str = "", body_required: bool = True) -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [] if roles is None else [{"bearer": []}]
    if roles is not None and vocab.ROLE_DEVICE not in roles:
        security.append({"session": []})  # the admin plane also takes the console's cookie
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": tags, "security": security,
                           "x-roles": roles}
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = {"required": body_required, "content": {body_type: {"schema": body}}}
    resp: dict[str, Any] = {str(k): v for k, v in responses.items()}
    codes = set(errors) | ({401, 403} if roles is not None else set()) | {400, 503}
    for code in sorted(codes):
        resp.setdefault(str(code), {"description": ERROR_TEXT.get(code, "error"), "content": {JSON: {"schema": ref("Error")}}})
    resp["default"] = ERROR_RESPONSE
    out["responses"] = resp
    return out
