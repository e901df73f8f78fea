"""OpenAPI: Geofences: fences (create, list, read, change, delete) and their transitions."""

from __future__ import annotations

from typing import Any

from ..domain import geofences as g
from .common import (ADMIN, CURSOR, IMEI, IMEIS, LAT, LIMIT, LON, READ, SINCE, TIME, UNTIL, UUID, WRITE,
                     json_response, nullable, obj, op, page_of, param, ref)

POSITION = {"type": "array", "minItems": 2, "maxItems": 3, "prefixItems": [LON, LAT], "items": {"type": "number"},
            "description": "[lon, lat] (WGS84 degrees; an optional altitude is ignored)"}
RING = {"type": "array", "minItems": 4, "items": POSITION,
        "description": "a closed linear ring: at least 4 positions, the last equal to the first"}
POLYGON_RINGS = {"type": "array", "minItems": 1, "maxItems": g.MAX_RINGS, "items": RING,
                 "description": "the outer ring, then any holes"}
IMEI_LIST = {"type": ["array", "null"], "minItems": 1, "maxItems": g.MAX_IMEIS, "items": IMEI,
             "description": "the devices the fence applies to; null or absent: every device"}
NAME = {"type": "string", "minLength": 1, "maxLength": g.NAME_MAX, "pattern": "\\S", "description": "not blank"}

SCHEMAS: dict[str, Any] = {
    "GeofenceGeometry": {
        "format": "geofence-geometry",
        "description": f"A GeoJSON Polygon or MultiPolygon (valid by OGC rules, at most {g.MAX_VERTICES} positions in "
                       "all, less than 180 degrees of longitude wide: split a fence crossing the antimeridian), or "
                       "a geodesic circle on the WGS84 ellipsoid. A point on the boundary is inside.",
        "oneOf": [
            obj(["type", "coordinates"], {"type": {"const": "Polygon"}, "coordinates": POLYGON_RINGS}),
            obj(["type", "coordinates"], {"type": {"const": "MultiPolygon"},
                                          "coordinates": {"type": "array", "minItems": 1, "maxItems": g.MAX_POLYGONS,
                                                          "items": POLYGON_RINGS}}),
            obj(["type", "center", "radius_m"], {
                "type": {"const": "Circle"}, "center": POSITION,
                "radius_m": {"type": "number", "minimum": g.MIN_RADIUS_M, "maximum": g.MAX_RADIUS_M}}),
        ]},
    "GeofenceNew": obj(["name", "geometry"], {"name": NAME, "geometry": ref("GeofenceGeometry"), "imeis": IMEI_LIST}),
    "GeofenceChange": obj([], {"name": NAME, "geometry": ref("GeofenceGeometry"), "imeis": IMEI_LIST},
                          minProperties=1),
    "Geofence": obj(["id", "name", "geometry", "imeis", "created_at", "updated_at"], {
        "id": UUID, "name": {"type": "string"}, "geometry": ref("GeofenceGeometry"),
        "imeis": nullable({"type": "array", "items": IMEI}), "created_by": {"type": ["string", "null"]},
        "created_at": TIME, "updated_at": TIME}),
    "GeofencePage": page_of("Geofence"),
    "GeofenceEvent": obj(["id", "geofence_id", "imei", "transition", "ts", "lat", "lon"], {
        "id": UUID, "geofence_id": UUID, "imei": IMEI, "transition": {"enum": ["enter", "exit"]},
        "ts": TIME, "lat": {"type": "number"}, "lon": {"type": "number"}}),
    "GeofenceEventPage": page_of("GeofenceEvent"),
}

PATH_FENCE = param("fence_id", "path", UUID, "the geofence's id")

PATHS: dict[str, Any] = {
    "/api/v1/admin/geofences": {
        "get": op("List geofences, oldest first", READ, {200: json_response("a page", ref("GeofencePage"))},
                  parameters=[LIMIT, CURSOR], op_id="listGeofences", tags=ADMIN),
        "post": op("Create a geofence", WRITE, {201: json_response("created", ref("Geofence"))},
                   body=ref("GeofenceNew"), errors=(409,), op_id="createGeofence", tags=ADMIN,
                   description=f"Audited (geofence.create). 409 when {g.MAX_FENCES} geofences exist. Devices are "
                               "evaluated against it from their next stored point on."),
    },
    "/api/v1/admin/geofences/{fence_id}": {
        "parameters": [PATH_FENCE],
        "get": op("A geofence", READ, {200: json_response("geofence", ref("Geofence"))}, errors=(404,),
                  op_id="getGeofence", tags=ADMIN),
        "patch": op("Change a geofence", WRITE, {200: json_response("changed", ref("Geofence"))},
                    body=ref("GeofenceChange"), errors=(404,), op_id="updateGeofence", tags=ADMIN,
                    description="Any of name, geometry, imeis (null: every device). Audited (geofence.update). A "
                                "device's next stored point is evaluated against the new fence."),
        "delete": op("Delete a geofence", WRITE, {204: {"description": "deleted; its transitions stay"}},
                     errors=(404,), op_id="deleteGeofence", tags=ADMIN,
                     description="Audited (geofence.delete)."),
    },
    "/api/v1/admin/geofence-events": {
        "get": op("Geofence transitions, newest first", READ, {200: json_response("a page", ref("GeofenceEventPage"))},
                  parameters=[IMEIS, param("geofence_id", "query", {"type": "array", "items": UUID, "maxItems": 100},
                                           "repeatable (or comma-separated)", explode=True),
                              SINCE, UNTIL, LIMIT, CURSOR],
                  op_id="listGeofenceEvents", tags=ADMIN,
                  description="Each device's stored points in ts order against the fences that apply to it: its "
                              "first point inside a fence is an enter, a change between inside and outside from "
                              "one point to the next is a transition with the first point on the new side. A "
                              "resent point, or one older than the newest evaluated for that device, changes "
                              "nothing. Each transition is also a `geofence` event on the feed and a webhook "
                              "(geofence.enter / geofence.exit)."),
    },
}
