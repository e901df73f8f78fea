"""OpenAPI: Operations: health, readiness, metrics, this document."""

from __future__ import annotations

from typing import Any

from .common import (OPERATIONS, json_response, obj, op, ref)


SCHEMAS: dict[str, Any] = {
    "Error": obj(["error"], {"error": obj(["code", "message"], {
        "code": {"type": "string", "pattern": "^[a-z_]+$"}, "message": {"type": "string"}})}),
    "Health": obj(["status"], {"status": {"type": "string"}}),
    "Ready": obj(["status", "stores"], {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                                        "stores": {"type": "object", "additionalProperties": {"type": "string"}}}),
}

PATHS: dict[str, Any] = {
    "/healthz": {"get": op("Process is alive", None, {200: json_response("alive", ref("Health"))},
                           op_id="healthz", tags=OPERATIONS)},
    "/readyz": {"get": op("Stores are reachable", None, {
        200: json_response("ready", ref("Ready")), 503: json_response("not ready", ref("Ready"))},
        op_id="readyz", tags=OPERATIONS)},
    "/metrics": {"get": op("Prometheus metrics", None, {200: {"description": "Prometheus text format", "content": {
        "text/plain": {"schema": {"type": "string"}}}}}, op_id="metrics", tags=OPERATIONS)},
    "/api/v1/openapi.json": {"get": op("This document", None, {200: json_response(
        "OpenAPI 3.1", {"type": "object", "required": ["openapi", "paths"]})}, op_id="openapi", tags=OPERATIONS)},
}
