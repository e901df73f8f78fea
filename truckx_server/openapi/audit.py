"""OpenAPI: the audit log."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, AUDIT, AUDIT_ACTIONS, CURSOR, LIMIT, TIME, json_response, obj, op, page_of, param,
                     ref)

SCHEMAS: dict[str, Any] = {
    "AuditEntry": obj(["at", "actor", "action", "target", "detail"], {
        "at": TIME, "actor": {"type": "string", "description": "the user who made the change"},
        "action": {"enum": AUDIT_ACTIONS},
        "target": {"type": "string", "description": "what changed: an IMEI, a user name, an alarm or command id, "
                                                        "IMEI/name of a video"},
        "detail": {"type": ["object", "null"], "description": "what the change set (never a secret); at most "
                                                              "2 KiB of JSON"}}),
    "AuditPage": page_of("AuditEntry"),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/audit": {
        "get": op("The audit log, newest first", AUDIT, {200: json_response("a page", ref("AuditPage"))},
                  parameters=[param("actor", "query", {"type": "array", "items": {"type": "string", "maxLength": 128},
                                                       "maxItems": 100}, "repeatable", explode=True),
                              param("action", "query", {"type": "array", "items": {"enum": AUDIT_ACTIONS}},
                                    "repeatable", explode=True),
                              param("target", "query", {"type": "array", "items": {"type": "string", "maxLength": 192},
                                                        "maxItems": 100}, "repeatable", explode=True),
                              param("since", "query", TIME, "inclusive lower bound of at (RFC 3339)"),
                              param("until", "query", TIME, "exclusive upper bound of at (RFC 3339)"),
                              LIMIT, CURSOR],
                  op_id="searchAudit", tags=ADMIN,
                  description="Every change made through the admin plane, written in the same transaction as "
                              "the change."),
    },
}
