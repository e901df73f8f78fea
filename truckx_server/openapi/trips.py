"""OpenAPI: Trips and stops of a device, computed from its stored track."""

from __future__ import annotations

from typing import Any

from .common import ADMIN, NUM, PATH_IMEI, READ, TIME, json_response, obj, op, param, ref

LATLON = obj(["lat", "lon"], {"lat": NUM, "lon": NUM})
WINDOW = [param("since", "query", TIME, "start of the window (inclusive; default: until minus one day)"),
          param("until", "query", TIME, "end of the window (exclusive; default: now); at most 31 days after since")]

SCHEMAS: dict[str, Any] = {
    "Trip": obj(["start", "end", "duration_s", "distance_km", "max_speed_kmh", "avg_speed_kmh", "start_location",
                 "end_location", "alarms"], {
        "start": {**TIME, "description": "the first moving fix (5 km/h or more)"},
        "end": {**TIME, "description": "the last moving fix before a stop (or the window's end)"},
        "duration_s": NUM, "distance_km": {**NUM, "description": "geodesic, WGS84 ellipsoid, fix to fix"},
        "max_speed_kmh": NUM, "avg_speed_kmh": {**NUM, "description": "distance over duration"},
        "start_location": LATLON, "end_location": LATLON,
        "alarms": {"type": "array", "items": {"type": "string"}, "description": "ids of the alarms within the trip"}}),
    "Stop": obj(["start", "end", "duration_s", "location"], {
        "start": TIME, "end": TIME, "duration_s": NUM, "location": LATLON}),
    "TripList": obj(["items"], {"items": {"type": "array", "items": ref("Trip")}}),
    "StopList": obj(["items"], {"items": {"type": "array", "items": ref("Stop")}}),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/devices/{imei}/trips": {
        "parameters": [PATH_IMEI],
        "get": op("A device's trips in a window", READ, {200: json_response("oldest first", ref("TripList"))},
                  parameters=WINDOW, errors=(404,), op_id="deviceTrips", tags=ADMIN,
                  description="A trip runs from the first moving fix to the last moving fix before a stop; it needs "
                              "two moving fixes. A stop is at least --stop-min-s (default 300) below 5 km/h, or a "
                              "gap in reports that long."),
    },
    "/api/v1/admin/devices/{imei}/stops": {
        "parameters": [PATH_IMEI],
        "get": op("A device's stops in a window", READ, {200: json_response("oldest first", ref("StopList"))},
                  parameters=WINDOW, errors=(404,), op_id="deviceStops", tags=ADMIN),
    },
}
