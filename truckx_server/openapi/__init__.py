"""The OpenAPI 3.1 document of every REST call, assembled from one module per resource (each with its
``SCHEMAS`` and ``PATHS``), beside the handler module of the same name.

``tests/server/test_openapi.py`` proves that it lists exactly the operations of the routing table, that
each operation's ``x-roles`` equals its handler's ``roles``, and that the responses the tests see
validate against its schemas. The two WebSockets (``/api/v1/device/ws``, ``/api/v1/admin/events``) are
not REST operations; they are described under ``x-websockets``.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from . import (alarms, audit, commands, console, devices, geofences, locations, nodes, ops, retention, trips, users,
               videos, webhooks)
from .common import DEVICE, READ, VERSION

MODULES = (ops, devices, users, alarms, locations, trips, commands, videos, retention, nodes, console, audit,
           webhooks, geofences)

WEBSOCKETS = {
    "/api/v1/device/ws": {"roles": DEVICE, "description": "Device session: location / locations / command_result / "
                          "ping in; ack (cumulative, after the points are durable) / command / error / pong out. "
                          "Token in Authorization or ?token=. Close codes: 4409 replaced by a newer connection, "
                          "4403 device disabled, 4401 device secret rotated, 1001 server shutting down, "
                          "1009 frame too large, 1011 a fault of the server (logged; reconnect and resend), "
                          "4429 not reading (more than ws-write-buffer-bytes queued for it; reconnect and resend "
                          "what has no ack). Frames are strict JSON (no NaN/Infinity, no lone surrogates, at most "
                          "32 levels deep); a bad frame gets an error frame and the session goes on."},
    "/api/v1/admin/events": {"roles": READ, "description": "Live events: location, alarm, device_status, "
                             "command_status, video, geofence ({type, at, imei, geofence_event: {id, geofence_id, "
                             "imei, transition, ts, lat, lon}}). Optional ?imei= (repeatable). Token in Authorization or "
                             "?token=, or the console's session cookie (then the Origin must be this server's: 403 "
                             "otherwise; signing out closes the feed with 4401). A client that falls 1000 events "
                             "or 4 MiB behind is closed with 4429; a user's feed beyond --max-feeds-per-user "
                             "(default 8) on one process closes that user's oldest feed with 4409; the feeds of a "
                             "user whose tokens are revoked (deleted, password or role changed) are closed with "
                             "4401."},
}


def _merged(attr: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for module in MODULES:
        part = getattr(module, attr)
        clash = out.keys() & part.keys()
        if clash:
            raise ValueError(f"OpenAPI {attr} defined twice: {sorted(clash)}")
        out.update(part)
    return out


@functools.lru_cache(maxsize=1)
def _document() -> str:
    doc = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "truckx", "version": VERSION,
                 "description": "Fleet dashcam server: device plane, admin plane, operations. Errors are "
                                "`{\"error\": {\"code\", \"message\"}}`. `viewer` may read; `operator` may "
                                "read, acknowledge and clear alarms, and send and cancel commands; `admin` may "
                                "do everything (`x-roles` on each operation). The admin plane takes a bearer "
                                "token or the console's `truckx_session` cookie; a request made with the cookie "
                                "whose method is not GET/HEAD/OPTIONS must carry `X-XSRFToken` set to the `_xsrf` "
                                "cookie's value (403 otherwise)."},
        "tags": [{"name": "operations"}, {"name": "device"}, {"name": "admin"}, {"name": "console"}],
        "paths": _merged("PATHS"),
        "components": {
            "schemas": _merged("SCHEMAS"),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "truckx_session",
                                            "description": "set by POST /api/v1/admin/session; admin plane only"}},
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
