"""OpenAPI: Alarms: report (device), search and lifecycle (admin)."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, ALARM_STATUSES, ALARM_TYPES, CURSOR, DEVICE, DEVICE_PLANE, FILE_NAME, IMEI, IMEIS, LIMIT, NUM,
                     OPERATE, PATH_ALARM, READ, SINCE, TIME, UNTIL, UUID, json_response, nullable, obj, op,
                     page_of, param, ref)


SCHEMAS: dict[str, Any] = {
    "AlarmIn": obj(["type", "ts", "lat", "lon"], {
        "id": {**UUID, "description": "device-generated; a retry with the same id creates nothing"},
        "type": {"type": "string", "description": "case-insensitive: " + ", ".join(ALARM_TYPES)},
        "ts": TIME, "lat": NUM, "lon": NUM, "speed_kmh": NUM,
        "files": {"type": "array", "items": FILE_NAME, "maxItems": 100},
        "details": {"type": "object"}}),
    "AlarmFile": obj(["name", "arrived"], {"name": FILE_NAME, "arrived": {
        "type": "boolean", "description": "the video of this file has been uploaded completely"},
        "thumbnail": {"type": "boolean", "description": "a thumbnail of the video exists (.../thumbnail)"}}),
    "Alarm": obj(["id", "imei", "type", "ts", "lat", "lon", "status", "received_at", "files"], {
        "id": UUID, "imei": IMEI, "type": {"type": "string", "enum": ALARM_TYPES}, "ts": TIME, "lat": NUM,
        "lon": NUM, "speed_kmh": nullable(NUM), "details": {"type": ["object", "null"]},
        "status": {"type": "string", "enum": ALARM_STATUSES}, "received_at": TIME,
        "acknowledged_by": {"type": ["string", "null"]}, "acknowledged_at": nullable(TIME),
        "ack_note": {"type": ["string", "null"]}, "cleared_by": {"type": ["string", "null"]},
        "cleared_at": nullable(TIME), "files": {"type": "array", "items": ref("AlarmFile")}}),
    "AlarmPage": page_of("Alarm"),
    "AckRequest": obj([], {"note": {"type": "string", "maxLength": 2000}}),
}

PATHS: dict[str, Any] = {
    "/api/v1/device/alarms": {"post": op(
        "Report an alarm", DEVICE, {201: json_response("stored", ref("Alarm")),
                                    200: json_response("a retry of a stored id: the stored alarm", ref("Alarm"))},
        body=ref("AlarmIn"), errors=(409, 413), op_id="reportAlarm", tags=DEVICE_PLANE)},
    "/api/v1/admin/alarms": {
        "get": op("Search alarms, newest first", READ, {200: json_response("a page", ref("AlarmPage"))},
                  parameters=[IMEIS, param("type", "query", {"type": "array", "items": {"type": "string"}},
                                           "repeatable; case-insensitive alarm type", explode=True),
                              param("status", "query", {"type": "array", "items": {
                                  "enum": ALARM_STATUSES}}, "repeatable", explode=True),
                              SINCE, UNTIL,
                              param("bbox", "query", {"type": "string"},
                                    "minLon,minLat,maxLon,maxLat (minLon > maxLon crosses the antimeridian)"),
                              param("has_video", "query", {"type": "boolean"},
                                    "true: at least one of its files' videos has arrived; false: none has"),
                              LIMIT, CURSOR],
                  op_id="searchAlarms", tags=ADMIN),
    },
    "/api/v1/admin/alarms/{alarm_id}": {
        "parameters": [PATH_ALARM],
        "get": op("One alarm", READ, {200: json_response("alarm", ref("Alarm"))}, errors=(404,),
                  op_id="getAlarm", tags=ADMIN),
    },
    "/api/v1/admin/alarms/{alarm_id}/ack": {
        "parameters": [PATH_ALARM],
        "post": op("Acknowledge an active alarm", OPERATE, {200: json_response("acknowledged", ref("Alarm"))},
                   body=ref("AckRequest"), errors=(404, 409), op_id="ackAlarm", tags=ADMIN,
                   description="The body is optional. 409 unless the alarm is active."),
    },
    "/api/v1/admin/alarms/{alarm_id}/clear": {
        "parameters": [PATH_ALARM],
        "post": op("Clear an alarm", OPERATE, {200: json_response("cleared", ref("Alarm"))}, errors=(404, 409),
                   op_id="clearAlarm", tags=ADMIN,
                   description="From active or acknowledged; 409 when cleared already. No body needed."),
    },
}
