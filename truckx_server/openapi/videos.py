"""OpenAPI: Videos: resumable uploads (device), listings, ranged downloads and thumbnails (admin)."""

from __future__ import annotations

from typing import Any

from .common import (ADMIN, CURSOR, DEVICE, DEVICE_PLANE, FILE_NAME, IMEI, IMEIS, JSON, LIMIT, PATH_IMEI, PATH_NAME,
                     READ, SINCE, TIME, UNTIL, WRITE, json_response, nullable, obj, op, page_of, param, ref)


_DOWNLOAD_HEADERS = [param("Range", "header", {"type": "string"}, "one bytes= range"),
                     param("If-Range", "header", {"type": "string"}), param("If-None-Match", "header", {"type": "string"})]


def download_responses() -> dict[int, Any]:
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


SCHEMAS: dict[str, Any] = {
    "VideoUploaded": obj(["name", "size", "sha256"], {"name": FILE_NAME, "size": {"type": "integer"},
                                                     "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}),
    "Video": obj(["imei", "name", "size", "complete", "duration_s", "width", "height", "codec", "thumbnail"], {
        "imei": IMEI, "name": FILE_NAME, "size": {"type": "integer"}, "sha256": {"type": ["string", "null"]},
        "complete": {"type": "boolean"}, "uploaded_at": nullable(TIME),
        "alarm_ids": {"type": "array", "items": {"type": "string"}},
        "duration_s": {"type": ["number", "null"], "minimum": 0,
                       "description": "read from the file once complete; null until then, or when not a video"},
        "width": {"type": ["integer", "null"], "minimum": 1}, "height": {"type": ["integer", "null"], "minimum": 1},
        "codec": {"type": ["string", "null"], "description": "FFmpeg's codec name: h264, hevc, vp9, av1, ..."},
        "thumbnail": {"type": "boolean", "description": "a JPEG frame exists (GET .../thumbnail)"}}),
    "VideoPage": page_of("Video"),
}

PATHS: dict[str, Any] = {
    "/api/v1/device/videos/{name}": {
        "parameters": [PATH_NAME],
        "put": op("Upload a video (streamed)", DEVICE, {
            201: json_response("stored", ref("VideoUploaded")),
            200: json_response("the same content was stored already", ref("VideoUploaded"))},
            body={"type": "string", "contentMediaType": "application/octet-stream"},
            body_type="application/octet-stream", errors=(409, 413), op_id="uploadVideo", tags=DEVICE_PLANE,
            parameters=[param("X-Content-SHA256", "header", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"})],
            description="409 for the same name with different content; 413 over the configured maximum."),
        "head": op("Resume state of an upload", DEVICE, {200: {
            "description": "Upload-Offset: bytes durably received; Upload-Complete: ?1 when complete",
            "headers": {"Upload-Offset": {"schema": {"type": "integer"}},
                        "Upload-Complete": {"schema": {"type": "string"}}}}}, op_id="videoUploadState", tags=DEVICE_PLANE),
        "patch": op("Append to an incomplete upload", DEVICE, {
            204: {"description": "appended; Upload-Offset is the new offset"},
            201: json_response("the final part: stored", ref("VideoUploaded")),
            200: json_response("the final part: same content stored already", ref("VideoUploaded"))},
            body={"type": "string", "contentMediaType": "application/octet-stream"},
            body_type="application/offset+octet-stream", errors=(409, 413), op_id="appendVideo", tags=DEVICE_PLANE,
            parameters=[param("Upload-Offset", "header", {"type": "integer", "minimum": 0}, required=True),
                        param("Upload-Complete", "header", {"type": "string"}),
                        param("X-Content-SHA256", "header", {"type": "string"})]),
    },
    "/api/v1/admin/devices/{imei}/videos": {
        "parameters": [PATH_IMEI],
        "get": op("A device's videos", READ, {200: json_response("a page", ref("VideoPage"))},
                  parameters=[LIMIT, CURSOR], errors=(404,), op_id="listVideos", tags=ADMIN),
    },
    "/api/v1/admin/videos": {
        "get": op("Every device's videos, newest upload first", READ, {200: json_response("a page", ref("VideoPage"))},
                  parameters=[IMEIS, SINCE, UNTIL,
                              param("complete", "query", {"type": "boolean"}, "only complete (true) or unfinished"),
                              LIMIT, CURSOR], op_id="listAllVideos", tags=ADMIN,
                  description="Ordered by uploaded_at, newest first; unfinished uploads (no uploaded_at) last. "
                              "since/until bound uploaded_at (since inclusive, until exclusive)."),
    },
    "/api/v1/admin/devices/{imei}/videos/{name}/thumbnail": {
        "parameters": [PATH_IMEI, PATH_NAME],
        "get": op("A video's thumbnail (JPEG)", READ, {200: {
            "description": "a frame from about one second in, 320 pixels wide (never upscaled)",
            "content": {"image/jpeg": {"schema": {"type": "string", "contentMediaType": "image/jpeg"}}}}},
            errors=(404,), op_id="videoThumbnail", tags=ADMIN,
            description="404 until it is made (within seconds of the upload completing), and for a file that "
                        "is not a decodable video."),
    },
    "/api/v1/admin/devices/{imei}/videos/{name}": {
        "parameters": [PATH_IMEI, PATH_NAME],
        "get": op("Download a video (Range supported)", READ, download_responses(),
                  parameters=_DOWNLOAD_HEADERS, errors=(404,), op_id="downloadVideo", tags=ADMIN),
        "head": op("A video's size, ETag and type, without the bytes", READ, download_responses(),
                   parameters=_DOWNLOAD_HEADERS, errors=(404,), op_id="videoInfo", tags=ADMIN),
        "delete": op("Delete a video", WRITE, {204: {"description": "deleted: the object, any part, the index row"}},
                     parameters=[param("force", "query", {"type": "boolean", "default": False},
                                       "delete it even when it is evidence")],
                     errors=(404, 409), op_id="deleteVideo", tags=ADMIN,
                     description="409 when the video is evidence (an alarm that is not cleared names it; the "
                                 "error carries those alarm_ids) and force is not true, or while an upload of it "
                                 "runs on the process answering. Audited."),
    },
}
