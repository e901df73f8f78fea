"""OpenAPI: Retention: what the stores hold and what the last retention pass removed."""

from __future__ import annotations

from typing import Any

from .common import ADMIN, READ, TIME, json_response, nullable, obj, op, ref

COUNT = {"type": "integer", "minimum": 0}


def _kind(description: str, **more: Any) -> dict[str, Any]:
    return obj(["count", "bytes", "oldest"], {"count": COUNT, "bytes": COUNT, "oldest": nullable(TIME), **more},
               description=description)


SCHEMAS: dict[str, Any] = {
    "Storage": obj(["locations", "alarms", "videos", "last_pass"], {
        "locations": _kind("points: exact count, estimated bytes (table and index), ts of the oldest"),
        "alarms": _kind("alarms of every status with their file rows: exact count, estimated bytes, ts of the "
                        "oldest"),
        "videos": _kind("complete videos: exact count and bytes (from the video index), upload time of the oldest",
                        evidence={**COUNT, "description": "complete videos named by an alarm that is not cleared"},
                        incomplete=obj(["count", "bytes"], {"count": COUNT, "bytes": COUNT},
                                       description="uploads not finished: bytes durably received")),
        "last_pass": {"anyOf": [ref("RetentionPass"), {"type": "null"}]},
        "retention": obj(["locations_days", "videos_days", "alarms_days", "interval_s"], {
            "locations_days": COUNT, "videos_days": COUNT, "alarms_days": COUNT, "interval_s": COUNT},
            description="this process's settings (0 days: kept forever)"),
    }),
    "RetentionPass": obj(["at", "removed"], {
        "at": TIME, "started_at": TIME, "node": {"type": "string"},
        "complete": {"type": "boolean", "description": "false when the pass ran out of time (the next one goes on)"},
        "removed": obj(["locations", "alarms", "videos"], {"locations": COUNT, "alarms": COUNT, "videos": COUNT,
                                                          "video_bytes": COUNT})}),
}

PATHS: dict[str, Any] = {
    "/api/v1/admin/storage": {
        "get": op("What the stores hold, and the last retention pass", READ,
                  {200: json_response("counts, sizes, oldest items", ref("Storage"))}, op_id="storage", tags=ADMIN,
                  description="Counts are exact (a scan of each store: not for tight polling loops); bytes are exact "
                              "for videos and an estimate for the database kinds."),
    },
}
