"""OpenAPI: Locations: tracks and latest positions."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, CURSOR, IMEI, IMEIS, JSON, LIMIT, NUM, PATH_IMEI, READ, SINCE, TIME, UNTIL, json_response, obj,
                     op, page_of, param, ref)


SCHEMAS: dict[str, Any] = {
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
            "properties": {"type": "object"}}),
            "description": "geojson_kind=line: one LineString (properties: times, speeds_kmh, one per position), "
                           "or one Point for a page of a single fix; geojson_kind=points: one Point per fix"},
        "next_cursor": {"type": ["string", "null"], "description": "foreign member: the next page's cursor"}}),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/devices/{imei}/locations": {
        "parameters": [PATH_IMEI],
        "get": op("A device's track, oldest first", READ, {200: {
            "description": "json: a page; geojson: a FeatureCollection of one kind of feature (next_cursor as a "
                           "foreign member); csv: header row then one row per fix; X-Next-Cursor carries the "
                           "next page's cursor in these. gpx (GPX 1.1, one trkseg per trip, speed and course in "
                           "Garmin's TrackPointExtension v2) and kml (KML 2.2, a LineString per trip and a Point "
                           "per stop) hold the whole window, streamed: not paged (a cursor is refused).",
            "headers": {"X-Next-Cursor": {"schema": {"type": "string"}}},
            "content": {JSON: {"schema": ref("LocationPage")},
                        "application/geo+json": {"schema": ref("GeoJsonTrack")},
                        "application/gpx+xml": {"schema": {"type": "string"}},
                        "application/vnd.google-earth.kml+xml": {"schema": {"type": "string"}},
                        "text/csv": {"schema": {"type": "string"}}}}},
            parameters=[SINCE, UNTIL, LIMIT, CURSOR,
                        param("format", "query", {"enum": ["json", "geojson", "gpx", "kml", "csv"],
                                                  "default": "json"}),
                        param("geojson_kind", "query", {"enum": ["line", "points"], "default": "line"},
                              "geojson: the track as one LineString with per-point times (line), or a Point per fix")],
            errors=(404,), op_id="deviceTrack", tags=ADMIN),
    },
    "/api/v1/admin/locations/latest": {
        "get": op("Latest position of every device", READ, {200: json_response("one per device", ref("LocationList"))},
                  parameters=[IMEIS], op_id="latestLocations", tags=ADMIN),
    },
}
