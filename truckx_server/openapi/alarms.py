"""OpenAPI: Alarms: report (device), search and lifecycle (admin)."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, ALARM_STATUSES, ALARM_TYPE_ANY_CASE, ALARM_TYPES, CURSOR, DEVICE, DEVICE_PLANE,
                     DEVICE_TIME, FILE_NAME, IMEI, IMEIS, LAT, LIMIT, LON, NUM, OPERATE, PATH_ALARM, READ, SINCE, TIME,
                     UNTIL, UUID, UUID_PATTERN, json_response, nullable, obj, op, page_of, param, ref)


SCHEMAS: dict[str, Any] = {
    "AlarmIn": obj(["type", "ts", "lat", "lon"], {
        "id": {"type": ["string", "null"], "format": "uuid", "pattern": UUID_PATTERN,
               "description": "device-generated; a retry with the same id creates nothing; absent or null: the "
                              "server makes one"},
        "type": ALARM_TYPE_ANY_CASE,
        "ts": DEVICE_TIME, "lat": LAT, "lon": LON, "speed_kmh": {"type": ["number", "null"], "minimum": 0, "maximum": 1000},
        "files": {"type": "array", "items": FILE_NAME, "maxItems": 100, "description": "repeats are stored once"},
        "details": {"type": ["object", "null"], "description": "free-form; with the body, at most 32 levels of nesting, "
                                                     "numbers within the range of a double"}}),
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
    "AckRequest": obj([], {"note": {"type": ["string", "null"], "maxLength": 2000}}),
}

_COORD = "-?[0-9]+(\\.[0-9]+)?"
#: the syntax is a pattern; the ranges and minLat <= maxLat are the ``bbox`` format's (described)
BBOX = {"type": "string", "format": "bbox", "pattern": f"^{_COORD}(,{_COORD}){{3}}$", "maxLength": 200,
        "description": "four numbers minLon,minLat,maxLon,maxLat: longitudes in [-180, 180], latitudes in "
                       "[-90, 90], minLat <= maxLat"}

PATHS: dict[str, Any] = {
    "/api/v1/device/alarms": {"post": op(
        "Report an alarm", DEVICE, {201: json_response("stored", ref("Alarm")),
                                    200: json_response("a retry of a stored id: the stored alarm", ref("Alarm"))},
        body=ref("AlarmIn"), errors=(409, 413), op_id="reportAlarm", tags=DEVICE_PLANE)},
    "/api/v1/admin/alarms": {
        "get": op("Search alarms, newest first", READ, {200: json_response("a page", ref("AlarmPage"))},
                  parameters=[IMEIS, param("type", "query", {"type": "array", "items": ALARM_TYPE_ANY_CASE},
                                           "repeatable; case-insensitive alarm type", explode=True),
                              param("status", "query", {"type": "array", "items": {
                                  "enum": ALARM_STATUSES}}, "repeatable", explode=True),
                              SINCE, UNTIL,
                              param("bbox", "query", BBOX,
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
                   body=ref("AckRequest"), body_required=False, errors=(404, 409), op_id="ackAlarm", tags=ADMIN,
                   description="The body is optional. 409 unless the alarm is active."),
    },
    "/api/v1/admin/alarms/{alarm_id}/clear": {
        "parameters": [PATH_ALARM],
        "post": op("Clear an alarm", OPERATE, {200: json_response("cleared", ref("Alarm"))}, errors=(404, 409),
                   op_id="clearAlarm", tags=ADMIN,
                   description="From active or acknowledged; 409 when cleared already. No body needed."),
    },
}
