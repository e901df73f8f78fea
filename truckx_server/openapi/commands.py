"""OpenAPI: Commands: send, list, read, cancel."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, COMMANDS, COMMAND_STATUSES, CURSOR, IMEI, IMEIS, LIMIT, OPERATE, PATH_IMEI, READ, TIME,
                     TIME_IN, UUID, json_response, nullable, obj, op, page_of, param, ref)


def _needs_args(command: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` as ``command`` needs them (JSON Schema ``if``/``then``)."""
    return {"if": {"required": ["command"], "properties": {"command": {"const": command}}},
            "then": {"required": ["args"], "properties": {"args": args}}}


SCHEMAS: dict[str, Any] = {
    "CommandNew": obj(["command"], {
        "command": {"enum": COMMANDS},
        "args": {"type": ["object", "null"],
                 "description": "set_report_interval: {seconds}; request_video: {from, to} with to after from; "
                                "other commands take none (null or {} alike)"},
        "ttl_s": {"type": "integer", "minimum": 1, "maximum": 2592000, "default": 3600}},
        allOf=[_needs_args("set_report_interval", obj(["seconds"], {
                   "seconds": {"type": "integer", "minimum": 1, "maximum": 86400}})),
               _needs_args("request_video", obj(["from", "to"], {"from": TIME_IN, "to": TIME_IN}))]),
    "Command": obj(["id", "imei", "command", "args", "status", "created_at", "expires_at"], {
        "id": UUID, "imei": IMEI, "command": {"type": "string"}, "args": {"type": "object"},
        "status": {"enum": COMMAND_STATUSES},
        "created_by": {"type": ["string", "null"]}, "created_at": TIME, "expires_at": TIME,
        "sent_at": nullable(TIME), "finished_at": nullable(TIME), "detail": {"type": ["string", "null"]}}),
    "CommandPage": page_of("Command"),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/devices/{imei}/commands": {
        "parameters": [PATH_IMEI],
        "post": op("Send a command", OPERATE, {202: json_response("queued (or sent when online)", ref("Command"))},
                   body=ref("CommandNew"), errors=(404,), op_id="sendCommand", tags=ADMIN,
                   description="Unknown command names are 400; an unregistered device is 404."),
    },
    "/api/v1/admin/commands": {
        "get": op("List commands, newest first", READ, {200: json_response("a page", ref("CommandPage"))},
                  parameters=[IMEIS, param("status", "query", {"type": "array", "items": {"enum": COMMAND_STATUSES}},
                                           "repeatable", explode=True),
                              param("since", "query", TIME, "inclusive lower bound of created_at (RFC 3339)"),
                              param("until", "query", TIME, "exclusive upper bound of created_at (RFC 3339)"),
                              LIMIT, CURSOR],
                  op_id="listCommands", tags=ADMIN),
    },
    "/api/v1/admin/commands/{command_id}": {
        "parameters": [param("command_id", "path", UUID)],
        "get": op("A command's status", READ, {200: json_response("command", ref("Command"))},
                  parameters=[param("wait", "query", {"type": "integer", "minimum": 0, "maximum": 60, "default": 0},
                                    "hold the request up to this many seconds for a final state")],
                  errors=(404,), op_id="getCommand", tags=ADMIN),
        "delete": op("Cancel a queued command", OPERATE, {200: json_response("cancelled", ref("Command"))},
                     errors=(404, 409), op_id="cancelCommand", tags=ADMIN,
                     description="A queued command becomes cancelled and is never sent; any other state is "
                                 "409 (the error carries the command's status)."),
    },
}
