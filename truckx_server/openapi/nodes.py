"""OpenAPI: Nodes: the server processes of the deployment."""

from __future__ import annotations

from typing import Any

from .common import ADMIN, READ, TIME, json_response, obj, op, ref

SCHEMAS: dict[str, Any] = {
    "Node": obj(["node_id", "started_at", "sessions", "last_heartbeat"], {
        "node_id": {"type": "string"}, "started_at": TIME,
        "sessions": {"type": "integer", "minimum": 0, "description": "device sockets this process holds"},
        "last_heartbeat": TIME}),
    "NodeList": obj(["items"], {"items": {"type": "array", "items": ref("Node")}}),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/nodes": {"get": op(
        "List the live server processes", READ, {200: json_response("nodes", ref("NodeList"))},
        op_id="listNodes", tags=ADMIN,
        description="Every process that sent a heartbeat on the bus within the last 10 s (one process "
                    "without a bus: itself). 503 while the bus is unreachable.")},
}
