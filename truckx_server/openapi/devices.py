"""OpenAPI: Devices: device login; register, list, show, change, rotate the secret."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, CURSOR, DEVICE_PLANE, IMEI, LIMIT, PATH_IMEI, RATE_LIMITED, READ, TIME, WRITE, json_response,
                     nullable, obj, op, page_of, ref)


SCHEMAS: dict[str, Any] = {
    "DeviceLogin": obj(["imei", "secret"], {"imei": IMEI, "secret": {"type": "string", "minLength": 1,
                                                                     "maxLength": 256}}),
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
}

PATHS: dict[str, Any] = {
    "/api/v1/device/login": {"post": op(
        "Device login", None, {200: json_response("token", ref("Token")), 429: RATE_LIMITED},
        body=ref("DeviceLogin"), errors=(401, 403, 413), op_id="deviceLogin", tags=DEVICE_PLANE,
        description="401 on unknown IMEI or wrong secret; 403 if the device is disabled. A registered and an "
                    "unknown IMEI take the same time and meet the same limits. Rate-limited (429 with "
                    "Retry-After): --device-login-rate-per-min attempts a minute per IMEI and client address, "
                    "5x that many failures a minute per address, and a per-IMEI brake like the admin login's.")},
    "/api/v1/admin/devices": {
        "get": op("List devices", READ, {200: json_response("a page, by IMEI", ref("DevicePage"))},
                  parameters=[LIMIT, CURSOR], op_id="listDevices", tags=ADMIN),
        "post": op("Register one or many devices", WRITE, {201: json_response(
            "registered; each secret is shown once", ref("RegisteredDevices"))}, body=ref("DeviceRegistration"),
            errors=(409, 413), op_id="registerDevices", tags=ADMIN),
    },
    "/api/v1/admin/devices/{imei}": {
        "parameters": [PATH_IMEI],
        "get": op("One device", READ, {200: json_response("device", ref("Device"))}, errors=(404,),
                  op_id="getDevice", tags=ADMIN),
        "patch": op("Rename, enable or disable a device", WRITE, {200: json_response("device", ref("Device"))},
                    body=ref("DevicePatch"), errors=(404,), op_id="updateDevice", tags=ADMIN,
                    description="enabled=false closes its live WebSocket (code 4403) and refuses its tokens."),
    },
    "/api/v1/admin/devices/{imei}/secret": {
        "parameters": [PATH_IMEI],
        "post": op("Rotate the device's secret", WRITE, {200: json_response(
            "the new secret, shown once; the old one stops working", ref("DeviceSecret"))}, errors=(404,),
            op_id="rotateSecret", tags=ADMIN),
    },
}
