"""The OpenAPI 3.1 document of every REST call (device plane, admin plane, operations).

Built as Python data once per process. ``tests/server/test_openapi.py`` proves that it lists exactly the
operations of the routing table, that each operation's ``x-roles`` equals its handler's ``roles``, and
that the responses the tests see validate against its schemas. The two WebSockets
(``/api/v1/device/ws``, ``/api/v1/admin/events``) are not REST operations; they are described under
``x-websockets``.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

VERSION = "1.0.0"

READ = ["admin", "viewer"]
WRITE = ["admin"]
DEVICE = ["device"]

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
IMEI = {"type": "string", "pattern": "^[0-9]{15}$", "description": "15 digits, Luhn check digit last"}
FILE_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}
UUID = {"type": "string", "format": "uuid"}
ALARM_TYPES = ["VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN"]
NUM = {"type": "number"}


def page_of(item: str) -> dict[str, Any]:
    return obj(["items", "next_cursor"], {
        "items": {"type": "array", "items": ref(item)},
        "next_cursor": {"type": ["string", "null"], "description": "pass as ?cursor= for the next page; null on the last"},
    })


SCHEMAS: dict[str, Any] = {
    "Error": obj(["error"], {"error": obj(["code", "message"], {
        "code": {"type": "string", "pattern": "^[a-z_]+$"}, "message": {"type": "string"}})}),
    "Health": obj(["status"], {"status": {"type": "string"}}),
    "Ready": obj(["status", "stores"], {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                                        "stores": {"type": "object", "additionalProperties": {"type": "string"}}}),
    "Token": obj(["token", "expires_at"], {"token": {"type": "string"}, "expires_at": TIME,
                                           "role": {"type": "string", "enum": ["admin", "viewer"]}}),
    "DeviceLogin": obj(["imei", "secret"], {"imei": IMEI, "secret": {"type": "string"}}),
    "AdminLogin": obj(["username", "password"], {"username": {"type": "string"}, "password": {"type": "string"}}),
    "Location": obj(["imei", "ts", "lat", "lon"], {
        "imei": IMEI, "ts": TIME, "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180}, "speed_kmh": NUM, "heading": NUM,
        "alt_m": NUM, "accuracy_m": NUM}),
    "LocationPage": page_of("Location"),
    "LocationList": obj(["items"], {"items": {"type": "array", "items": ref("Location")}}),
    "GeoJsonTrack": obj(["type", "features", "next_cursor"], {
        "type": {"const": "FeatureCollection"},
        "features": {"type": "array", "items": obj(["type", "geometry", "properties"], {
            "type": {"const": "Feature"},
            "geometry": obj(["type", "coordinates"], {"type": {"enum": ["LineString", "Point"]},
                                                      "coordinates": {"type": "array"}}),
            "properties": {"type": "object"}})},
        "next_cursor": {"type": ["string", "null"], "description": "foreign member: the next page's cursor"}}),
    "AlarmIn": obj(["type", "ts", "lat", "lon"], {
        "id": {**UUID, "description": "device-generated; a retry with the same id creates nothing"},
        "type": {"type": "string", "description": "case-insensitive: " + ", ".join(ALARM_TYPES)},
        "ts": TIME, "lat": NUM, "lon": NUM, "speed_kmh": NUM,
        "files": {"type": "array", "items": FILE_NAME, "maxItems": 100},
        "details": {"type": "object"}}),
    "AlarmFile": obj(["name", "arrived"], {"name": FILE_NAME, "arrived": {
        "type": "boolean", "description": "the video of this file has been uploaded completely"}}),
    "Alarm": obj(["id", "imei", "type", "ts", "lat", "lon", "status", "received_at", "files"], {
        "id": UUID, "imei": IMEI, "type": {"type": "string", "enum": ALARM_TYPES}, "ts": TIME, "lat": NUM,
        "lon": NUM, "speed_kmh": nullable(NUM), "details": {"type": ["object", "null"]},
        "status": {"type": "string", "enum": ["active", "acknowledged", "cleared"]}, "received_at": TIME,
        "acknowledged_by": {"type": ["string", "null"]}, "acknowledged_at": nullable(TIME),
        "ack_note": {"type": ["string", "null"]}, "cleared_by": {"type": ["string", "null"]},
        "cleared_at": nullable(TIME), "files": {"type": "array", "items": ref("AlarmFile")}}),
    "AlarmPage": page_of("Alarm"),
    "AckRequest": obj([], {"note": {"type": "string", "maxLength": 2000}}),
    "Device": obj(["imei", "name", "enabled", "online", "last_seen", "last_location"], {
        "imei": IMEI, "name": {"type": ["string", "null"]}, "enabled": {"type": "boolean"},
        "online": {"type": "boolean"}, "last_seen": nullable(TIME), "created_at": nullable(TIME),
        "last_location": nullable(ref("Location"))}),
    "DevicePage": page_of("Device"),
    "DeviceNew": obj(["imei"], {"imei": IMEI, "name": {"type": ["string", "null"], "maxLength": 128}}),
    "DeviceRegistration": {"oneOf": [ref("DeviceNew"), obj(["devices"], {
        "devices": {"type": "array", "items": ref("DeviceNew"), "minItems": 1, "maxItems": 10000}})]},
    "RegisteredDevice": obj(["imei", "name", "enabled", "secret"], {
        "imei": IMEI, "name": {"type": ["string", "null"]}, "enabled": {"type": "boolean"},
        "secret": {"type": "string", "description": "shown once; stored hashed"}}),
    "RegisteredDevices": {"anyOf": [ref("RegisteredDevice"), obj(["devices"], {
        "devices": {"type": "array", "items": ref("RegisteredDevice")}})]},
    "DevicePatch": obj([], {"name": {"type": ["string", "null"], "maxLength": 128},
                            "enabled": {"type": "boolean", "description": "false closes its live sessions"}},
                       minProperties=1),
    "DeviceSecret": obj(["imei", "secret"], {"imei": IMEI, "secret": {"type": "string"}}),
    "User": obj(["username", "role"], {"username": {"type": "string"}, "role": {"enum": ["admin", "viewer"]},
                                       "created_at": nullable(TIME)}),
    "UserList": obj(["items"], {"items": {"type": "array", "items": ref("User")}}),
    "UserNew": obj(["username", "password"], {
        "username": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"},
        "password": {"type": "string", "minLength": 12, "maxLength": 1024},
        "role": {"enum": ["admin", "viewer"], "default": "viewer"}}),
    "CommandNew": obj(["command"], {
        "command": {"enum": ["reset", "set_report_interval", "request_video"]},
        "args": {"type": "object", "description": "set_report_interval: {seconds}; request_video: {from, to}"},
        "ttl_s": {"type": "integer", "minimum": 1, "maximum": 2592000, "default": 3600}}),
    "Command": obj(["id", "imei", "command", "args", "status", "created_at", "expires_at"], {
        "id": UUID, "imei": IMEI, "command": {"type": "string"}, "args": {"type": "object"},
        "status": {"enum": ["queued", "sent", "succeeded", "failed", "expired"]},
        "created_by": {"type": ["string", "null"]}, "created_at": TIME, "expires_at": TIME,
        "sent_at": nullable(TIME), "finished_at": nullable(TIME), "detail": {"type": ["string", "null"]}}),
    "VideoUploaded": obj(["name", "size", "sha256"], {"name": FILE_NAME, "size": {"type": "integer"},
                                                     "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}),
    "Video": obj(["name", "size", "complete"], {
        "name": FILE_NAME, "size": {"type": "integer"}, "sha256": {"type": ["string", "null"]},
        "complete": {"type": "boolean"}, "uploaded_at": nullable(TIME),
        "alarm_ids": {"type": "array", "items": {"type": "string"}}}),
    "VideoPage": page_of("Video"),
}

ERROR_RESPONSE = {"description": "error", "content": {JSON: {"schema": ref("Error")}}}
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
CURSOR = param("cursor", "query", {"type": "string"}, "next_cursor of the previous page (opaque)")
PATH_IMEI = param("imei", "path", IMEI)
PATH_NAME = param("name", "path", FILE_NAME)
PATH_ALARM = param("alarm_id", "path", {"type": "string"}, "the alarm's id")
SINCE = param("since", "query", TIME, "inclusive lower bound of ts (RFC 3339)")
UNTIL = param("until", "query", TIME, "exclusive upper bound of ts (RFC 3339)")
IMEIS = param("imei", "query", {"type": "array", "items": IMEI}, "repeatable (or comma-separated)", explode=True)


def op(summary: str, roles: list[str] | None, responses: dict[int | str, Any], *, body: dict[str, Any] | None = None,
       body_type: str = JSON, parameters: list[dict[str, Any]] | None = None, errors: tuple[int, ...] = (),
       op_id: str, tags: list[str], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": tags,
                           "security": [] if roles is None else [{"bearer": []}], "x-roles": roles}
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    resp: dict[str, Any] = {str(k): v for k, v in responses.items()}
    codes = set(errors) | ({401, 403} if roles is not None else set()) | {400, 503}
    for code in sorted(codes):
        resp.setdefault(str(code), {"description": ERROR_TEXT.get(code, "error"), "content": {JSON: {"schema": ref("Error")}}})
    resp["default"] = ERROR_RESPONSE
    out["responses"] = resp
    return out


_DOWNLOAD_HEADERS = [param("Range", "header", {"type": "string"}, "one bytes= range"),
                     param("If-Range", "header", {"type": "string"}), param("If-None-Match", "header", {"type": "string"})]


def _download_responses() -> dict[int, Any]:
    headers = {"ETag": {"schema": {"type": "string"}, "description": "the quoted SHA-256 of the content"},
               "Content-Length": {"schema": {"type": "integer"}}, "Accept-Ranges": {"schema": {"const": "bytes"}},
               "X-Content-SHA256": {"schema": {"type": "string"}}}
    binary = {"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}
    return {
        200: {"description": "the bytes, streamed; the type guessed from the name", "headers": headers,
              "content": binary},
        206: {"description": "the requested range", "content": binary,
              "headers": {**headers, "Content-Range": {"schema": {"type": "string"}}}},
        304: {"description": "If-None-Match matched the ETag"},
        416: {"description": "the range lies outside the file (Content-Range: bytes */size)",
              "content": {JSON: {"schema": ref("Error")}}},
    }


def _paths() -> dict[str, Any]:
    a, d, o = ["admin"], ["device"], ["operations"]
    return {
        # -- operations ------------------------------------------------------------------------
        "/healthz": {"get": op("Process is alive", None, {200: json_response("alive", ref("Health"))},
                               op_id="healthz", tags=o)},
        "/readyz": {"get": op("Stores are reachable", None, {
            200: json_response("ready", ref("Ready")), 503: json_response("not ready", ref("Ready"))},
            op_id="readyz", tags=o)},
        "/metrics": {"get": op("Prometheus metrics", None, {200: {"description": "Prometheus text format", "content": {
            "text/plain": {"schema": {"type": "string"}}}}}, op_id="metrics", tags=o)},
        "/api/v1/openapi.json": {"get": op("This document", None, {200: json_response(
            "OpenAPI 3.1", {"type": "object", "required": ["openapi", "paths"]})}, op_id="openapi", tags=o)},
        # -- device plane ----------------------------------------------------------------------
        "/api/v1/device/login": {"post": op(
            "Device login", None, {200: json_response("token", ref("Token"))}, body=ref("DeviceLogin"),
            errors=(401, 403, 429), op_id="deviceLogin", tags=d,
            description="401 on unknown IMEI or wrong secret; 403 if the device is disabled.")},
        "/api/v1/device/alarms": {"post": op(
            "Report an alarm", DEVICE, {201: json_response("stored", ref("Alarm")),
                                        200: json_response("a retry of a stored id: the stored alarm", ref("Alarm"))},
            body=ref("AlarmIn"), errors=(409, 413), op_id="reportAlarm", tags=d)},
        "/api/v1/device/videos/{name}": {
            "parameters": [PATH_NAME],
            "put": op("Upload a video (streamed)", DEVICE, {
                201: json_response("stored", ref("VideoUploaded")),
                200: json_response("the same content was stored already", ref("VideoUploaded"))},
                body={"type": "string", "contentMediaType": "application/octet-stream"},
                body_type="application/octet-stream", errors=(409, 413), op_id="uploadVideo", tags=d,
                parameters=[param("X-Content-SHA256", "header", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"})],
                description="409 for the same name with different content; 413 over the configured maximum."),
            "head": op("Resume state of an upload", DEVICE, {200: {
                "description": "Upload-Offset: bytes durably received; Upload-Complete: ?1 when complete",
                "headers": {"Upload-Offset": {"schema": {"type": "integer"}},
                            "Upload-Complete": {"schema": {"type": "string"}}}}}, op_id="videoUploadState", tags=d),
            "patch": op("Append to an incomplete upload", DEVICE, {
                204: {"description": "appended; Upload-Offset is the new offset"},
                201: json_response("the final part: stored", ref("VideoUploaded")),
                200: json_response("the final part: same content stored already", ref("VideoUploaded"))},
                body={"type": "string", "contentMediaType": "application/octet-stream"},
                body_type="application/offset+octet-stream", errors=(409, 413), op_id="appendVideo", tags=d,
                parameters=[param("Upload-Offset", "header", {"type": "integer", "minimum": 0}, required=True),
                            param("Upload-Complete", "header", {"type": "string"}),
                            param("X-Content-SHA256", "header", {"type": "string"})]),
        },
        # -- admin plane -----------------------------------------------------------------------
        "/api/v1/admin/login": {"post": op(
            "Admin login", None, {200: json_response("token", ref("Token"))}, body=ref("AdminLogin"),
            errors=(401, 429), op_id="adminLogin", tags=a,
            description="Rate-limited per username and per address.")},
        "/api/v1/admin/users": {
            "get": op("List users", READ, {200: json_response("users", ref("UserList"))}, op_id="listUsers", tags=a),
            "post": op("Create a user", WRITE, {201: json_response("created", ref("User"))}, body=ref("UserNew"),
                       errors=(409,), op_id="createUser", tags=a,
                       description="Password of 12 characters or more, hashed with argon2id."),
        },
        "/api/v1/admin/users/{username}": {
            "parameters": [param("username", "path", {"type": "string"})],
            "delete": op("Delete a user", WRITE, {204: {"description": "deleted; its tokens stop working"}},
                         errors=(404, 409), op_id="deleteUser", tags=a,
                         description="409 when deleting yourself or the last admin."),
        },
        "/api/v1/admin/devices": {
            "get": op("List devices", READ, {200: json_response("a page, by IMEI", ref("DevicePage"))},
                      parameters=[LIMIT, CURSOR], op_id="listDevices", tags=a),
            "post": op("Register one or many devices", WRITE, {201: json_response(
                "registered; each secret is shown once", ref("RegisteredDevices"))}, body=ref("DeviceRegistration"),
                errors=(409, 413), op_id="registerDevices", tags=a),
        },
        "/api/v1/admin/devices/{imei}": {
            "parameters": [PATH_IMEI],
            "get": op("One device", READ, {200: json_response("device", ref("Device"))}, errors=(404,),
                      op_id="getDevice", tags=a),
            "patch": op("Rename, enable or disable a device", WRITE, {200: json_response("device", ref("Device"))},
                        body=ref("DevicePatch"), errors=(404,), op_id="updateDevice", tags=a,
                        description="enabled=false closes its live WebSocket (code 4403) and refuses its tokens."),
        },
        "/api/v1/admin/devices/{imei}/secret": {
            "parameters": [PATH_IMEI],
            "post": op("Rotate the device's secret", WRITE, {200: json_response(
                "the new secret, shown once; the old one stops working", ref("DeviceSecret"))}, errors=(404,),
                op_id="rotateSecret", tags=a),
        },
        "/api/v1/admin/devices/{imei}/locations": {
            "parameters": [PATH_IMEI],
            "get": op("A device's track, oldest first", READ, {200: {
                "description": "json: a page; geojson: a FeatureCollection (next_cursor as a foreign member); "
                               "gpx: GPX 1.1; csv: header row then one row per fix. X-Next-Cursor carries the "
                               "next page's cursor in every format.",
                "headers": {"X-Next-Cursor": {"schema": {"type": "string"}}},
                "content": {JSON: {"schema": ref("LocationPage")},
                            "application/geo+json": {"schema": ref("GeoJsonTrack")},
                            "application/gpx+xml": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}}}}},
                parameters=[SINCE, UNTIL, LIMIT, CURSOR,
                            param("format", "query", {"enum": ["json", "geojson", "gpx", "csv"], "default": "json"})],
                errors=(404,), op_id="deviceTrack", tags=a),
        },
        "/api/v1/admin/devices/{imei}/videos": {
            "parameters": [PATH_IMEI],
            "get": op("A device's videos", READ, {200: json_response("a page", ref("VideoPage"))},
                      parameters=[LIMIT, CURSOR], errors=(404,), op_id="listVideos", tags=a),
        },
        "/api/v1/admin/devices/{imei}/videos/{name}": {
            "parameters": [PATH_IMEI, PATH_NAME],
            "get": op("Download a video (Range supported)", READ, _download_responses(),
                      parameters=_DOWNLOAD_HEADERS, errors=(404,), op_id="downloadVideo", tags=a),
            "head": op("A video's size, ETag and type, without the bytes", READ, _download_responses(),
                       parameters=_DOWNLOAD_HEADERS, errors=(404,), op_id="videoInfo", tags=a),
        },
        "/api/v1/admin/devices/{imei}/commands": {
            "parameters": [PATH_IMEI],
            "post": op("Send a command", WRITE, {202: json_response("queued (or sent when online)", ref("Command"))},
                       body=ref("CommandNew"), errors=(404,), op_id="sendCommand", tags=a,
                       description="Unknown command names are 400; an unregistered device is 404."),
        },
        "/api/v1/admin/alarms": {
            "get": op("Search alarms, newest first", READ, {200: json_response("a page", ref("AlarmPage"))},
                      parameters=[IMEIS, param("type", "query", {"type": "array", "items": {"type": "string"}},
                                               "repeatable; case-insensitive alarm type", explode=True),
                                  param("status", "query", {"type": "array", "items": {
                                      "enum": ["active", "acknowledged", "cleared"]}}, "repeatable", explode=True),
                                  SINCE, UNTIL,
                                  param("bbox", "query", {"type": "string"},
                                        "minLon,minLat,maxLon,maxLat (minLon > maxLon crosses the antimeridian)"),
                                  param("has_video", "query", {"type": "boolean"},
                                        "true: at least one of its files' videos has arrived; false: none has"),
                                  LIMIT, CURSOR],
                      op_id="searchAlarms", tags=a),
        },
        "/api/v1/admin/alarms/{alarm_id}": {
            "parameters": [PATH_ALARM],
            "get": op("One alarm", READ, {200: json_response("alarm", ref("Alarm"))}, errors=(404,),
                      op_id="getAlarm", tags=a),
        },
        "/api/v1/admin/alarms/{alarm_id}/ack": {
            "parameters": [PATH_ALARM],
            "post": op("Acknowledge an active alarm", WRITE, {200: json_response("acknowledged", ref("Alarm"))},
                       body=ref("AckRequest"), errors=(404, 409), op_id="ackAlarm", tags=a,
                       description="The body is optional. 409 unless the alarm is active."),
        },
        "/api/v1/admin/alarms/{alarm_id}/clear": {
            "parameters": [PATH_ALARM],
            "post": op("Clear an alarm", WRITE, {200: json_response("cleared", ref("Alarm"))}, errors=(404, 409),
                       op_id="clearAlarm", tags=a,
                       description="From active or acknowledged; 409 when cleared already. No body needed."),
        },
        "/api/v1/admin/locations/latest": {
            "get": op("Latest position of every device", READ, {200: json_response("one per device", ref("LocationList"))},
                      parameters=[IMEIS], op_id="latestLocations", tags=a),
        },
        "/api/v1/admin/commands/{command_id}": {
            "parameters": [param("command_id", "path", UUID)],
            "get": op("A command's status", READ, {200: json_response("command", ref("Command"))},
                      parameters=[param("wait", "query", {"type": "integer", "minimum": 0, "maximum": 60, "default": 0},
                                        "hold the request up to this many seconds for a final state")],
                      errors=(404,), op_id="getCommand", tags=a),
        },
    }


WEBSOCKETS = {
    "/api/v1/device/ws": {"roles": DEVICE, "description": "Device session: location / locations / command_result / "
                          "ping in; ack (cumulative, after the points are durable) / command / error / pong out. "
                          "Token in Authorization or ?token=. Close codes: 4409 replaced by a newer connection, "
                          "4403 device disabled, 4401 device secret rotated, 1001 server shutting down, "
                          "1009 frame too large."},
    "/api/v1/admin/events": {"roles": READ, "description": "Live events: location, alarm, device_status, "
                             "command_status, video. Optional ?imei= (repeatable). Token in Authorization or "
                             "?token=. A client that falls 1000 events behind is closed with 4429."},
}


@functools.lru_cache(maxsize=1)
def _document() -> str:
    doc = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "truckx", "version": VERSION,
                 "description": "Fleet dashcam server: device plane, admin plane, operations. Errors are "
                                "`{\"error\": {\"code\", \"message\"}}`. `viewer` may read; only `admin` may "
                                "change anything (`x-roles` on each operation)."},
        "tags": [{"name": "operations"}, {"name": "device"}, {"name": "admin"}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "x-websockets": WEBSOCKETS,
    }
    return json.dumps(doc, separators=(",", ":"))


def document_json() -> str:
    """The document, serialised once."""
    return _document()


def document() -> dict[str, Any]:
    """A fresh copy of the document as Python data."""
    return copy.deepcopy(json.loads(_document()))
