"""Videos: streamed, resumable device uploads and the admin's listing and ranged downloads.

Device plane (role device; the IMEI always comes from the token)::

    PUT   /api/v1/device/videos/{name}   the whole file, streamed to a part file, hashed on the fly
    HEAD  /api/v1/device/videos/{name}   Upload-Offset (durable bytes) [+ Upload-Complete: ?1]
    PATCH /api/v1/device/videos/{name}   Upload-Offset: N, appends; Upload-Complete: ?1 on the last part

Admin plane (roles admin and viewer)::

    GET       /api/v1/admin/videos                                 every device's videos, newest first, filters
    GET       /api/v1/admin/devices/{imei}/videos                  keyset-paged listing
    GET/HEAD  /api/v1/admin/devices/{imei}/videos/{name}           the bytes, streamed, with Range / ETag
    DELETE    /api/v1/admin/devices/{imei}/videos/{name}           (admin) the video; evidence needs ?force=true
    GET       /api/v1/admin/devices/{imei}/videos/{name}/thumbnail  a JPEG frame (404 until made)

Handlers parse and serialise; the upload's life cycle is in ``domain/videos.py`` and every file
operation in the video store (``storage/videos_fs.py``).
"""

from __future__ import annotations

import copy
import mimetypes
import re
from typing import Any, Awaitable

import tornado.web
from tornado.http1connection import HTTP1ConnectionParameters
from tornado.iostream import IOStream, StreamClosedError

from ..errors import InvalidArgument, PayloadTooLarge, TruckxError
from ..models import parse_bool, validate_file_name, validate_imei
from ..storage.base import PartWriter
from ..vocab import READ, WRITE
from .base import AdminHandler, DeviceHandler
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
#: the connection-level body limit while a video streams in: the handler counts the bytes itself and
#: answers 413 with a JSON body; Tornado's own check would answer a bare 400 for chunked bodies, since
#: it compares the *declared* chunk sizes before handing any byte over
_CONNECTION_BODY_LIMIT = 2**62
#: the largest piece of an upload's body Tornado hands to ``data_received`` (its default is 64 KiB)
UPLOAD_READ_CHUNK = 1024 * 1024
#: bytes read from disk per write to a downloading client (at most one is held per download)
_DOWNLOAD_CHUNK = 256 * 1024
#: A refused upload's body is read and thrown away up to this many bytes before the error is sent, so
#: that the client (which, like httpx, reads the answer only once it has sent its body) gets the 413 or
#: 409 instead of a connection reset. Past it the answer goes out at once and the connection closes.
LINGER_BYTES = 16 * 1024 * 1024


def _header_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise InvalidArgument(f"{name} must be a non-negative integer")
    return int(value)


class DeviceVideoHandler(DeviceHandler):
    roles = {"PUT": ("device",), "PATCH": ("device",), "HEAD": ("device",)}

    def initialize(self) -> None:
        super().initialize()
        self._writer: PartWriter | None = None
        self._limit = 0
        self._name = ""
        #: what is left to read of a refused request's body (see LINGER_BYTES; BaseHandler._refusal)
        self._linger_left = 0
        #: the stream whose read size this upload raised, and the size to put back when it ends
        self._stream_read_size: tuple[IOStream, int] | None = None
        self._upload_bytes = self.node.metrics.upload_bytes

    async def prepare(self) -> None:
        if self.request.method not in ("PUT", "PATCH"):
            try:
                await self._prepare()
            except (TruckxError, tornado.web.HTTPError) as exc:
                self.refuse(exc)  # after the (empty) body: the connection stays usable
            return
        # from here on the body is ours to count: nothing below may make Tornado refuse it itself
        self.request.connection.set_max_body_size(_CONNECTION_BODY_LIMIT)  # type: ignore[union-attr]
        try:
            await self._prepare()
        except TruckxError as exc:
            # Decided before reading a byte, and nothing of the body is kept. A short body is still
            # read (and dropped) so that the client can read the answer; a long one is not, and the
            # answer closes the connection.
            length = self.request.headers.get("Content-Length", "").strip()
            if length and not (length.isdigit() and int(length) <= LINGER_BYTES):
                self.close_after_answer = True
                raise
            self._refuse(exc)
        self.watch_body()

    def _refuse(self, exc: TruckxError) -> None:
        self._refusal, self._linger_left = exc, LINGER_BYTES

    async def _prepare(self) -> None:
        await self.authenticate()
        self._name = validate_file_name(self.path_args[0] if self.path_args else "")
        if self.principal is not None:
            await self.devices.authenticate(self.principal)
        if self.request.method == "HEAD":
            return
        headers = self.request.headers
        length = _header_int(headers.get("Content-Length"), "Content-Length")
        expected = headers.get("X-Content-SHA256")
        if expected is not None and not _SHA256_RE.fullmatch(expected.strip()):
            raise InvalidArgument("X-Content-SHA256 must be 64 hex digits")
        offset: int | None = None
        if self.request.method == "PATCH":
            offset = _header_int(headers.get("Upload-Offset"), "Upload-Offset")
            if offset is None:
                raise InvalidArgument("PATCH needs an Upload-Offset header")
            if headers.get("Upload-Complete", "?0").strip() not in ("?0", "?1"):
                raise InvalidArgument("Upload-Complete must be ?1 or ?0")
        self._limit = self.videos.max_bytes
        self._writer = await self.videos.begin(self.imei, self._name, offset, length, on_preempt=self._cut_off)
        # a disable or a rotation that came while the upload was being set up was not seen by it (the
        # upload cuts itself off only from now on): check the device again, now that its cache entry
        # would have been dropped
        if self.principal is not None:
            await self.devices.authenticate(self.principal)
        self._read_in_large_pieces()

    def _read_in_large_pieces(self) -> None:
        """Have Tornado read this request's body in pieces of up to UPLOAD_READ_CHUNK instead of its
        64 KiB default (16x fewer socket reads, loop iterations and hand-offs per byte). Only this
        request changes: its connection gets a copy of the parameters (HTTPServer shares one object
        between all its connections) and its stream's read size is put back when the request ends, so
        WebSocket and other connections keep their small reads."""
        connection = self.request.connection
        params = getattr(connection, "params", None)
        stream = getattr(connection, "stream", None)
        if not isinstance(params, HTTP1ConnectionParameters) or not isinstance(stream, IOStream):
            return
        if params.chunk_size < UPLOAD_READ_CHUNK:
            params = copy.copy(params)
            params.chunk_size = UPLOAD_READ_CHUNK
            connection.params = params  # type: ignore[union-attr]
        if stream.read_chunk_size < UPLOAD_READ_CHUNK:
            self._stream_read_size = (stream, stream.read_chunk_size)
            stream.read_chunk_size = min(UPLOAD_READ_CHUNK, stream.max_buffer_size // 2)

    def _restore_read_size(self) -> None:
        if self._stream_read_size is not None:
            stream, size = self._stream_read_size
            self._stream_read_size = None
            stream.read_chunk_size = size

    def _cut_off(self) -> None:
        """A newer request of this device for the same file took over, or the device was disabled or its
        secret rotated: drop this connection (its on_connection_close puts the part away at its durable
        offset)."""
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            stream.close()

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        # Not a coroutine: Tornado awaits only what is returned, which is an awaitable only when the
        # writer's threads lag behind (backpressure) or on the 413 path; every other chunk costs no task.
        writer = self._writer
        self.body_arrived()
        if self._finished:
            return None  # answered already; Tornado drops the rest and closes the connection
        if self._refusal is not None or writer is None:
            self._linger_left -= len(chunk)
            if self._linger_left < 0:
                self.send_refusal_now()  # too much to read through: answer now, and close
            return None
        self._upload_bytes.inc(len(chunk))
        if writer.size + len(chunk) > self._limit:
            self._writer = None
            return self._too_large(writer, len(chunk))
        return writer.write(chunk)

    async def _too_large(self, writer: PartWriter, received: int) -> None:
        await self.videos.abandon(writer)
        self._refuse(PayloadTooLarge(f"a video may have at most {self._limit} bytes"))
        self._linger_left -= received

    def _take_writer(self) -> PartWriter:
        if self._refusal is not None:
            raise self._refusal
        writer, self._writer = self._writer, None
        if writer is None:
            raise tornado.web.HTTPError(500)
        return writer

    def _expected_sha256(self) -> str | None:
        value = self.request.headers.get("X-Content-SHA256")
        return value.strip().lower() if value else None

    async def head(self, _name: str) -> None:
        offset, complete = await self.videos.upload_state(self.imei, self._name)
        self.set_header("Upload-Offset", str(offset))
        if complete:
            self.set_header("Upload-Complete", "?1")
        self.finish()

    async def put(self, _name: str) -> None:
        body, status = await self.videos.finish(self._take_writer(), self._expected_sha256())
        self.write_json(body, status)

    async def patch(self, _name: str) -> None:
        writer = self._take_writer()
        if self.request.headers.get("Upload-Complete", "").strip() == "?1":
            body, status = await self.videos.finish(writer, self._expected_sha256())
            self.write_json(body, status)
            return
        offset = await self.videos.pause(writer)
        self.set_header("Upload-Offset", str(offset))
        self.set_status(204)
        self.finish()

    def _put_away(self) -> None:
        """The request ended without finishing its upload: keep the part, durably, for a resume."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self.videos.put_away(writer)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._restore_read_size()
        self._put_away()

    def on_finish(self) -> None:
        super().on_finish()
        self._restore_read_size()
        self._put_away()


class AdminVideosHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, imei: str) -> None:
        self.write_json(await self.videos.list(imei, *self.page_args()))


class FleetVideosHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        limit, cursor = self.page_args()
        self.write_json(await self.videos.list_all(
            imeis=self.query_list("imei"), since=self.get_query_argument("since", None),
            until=self.get_query_argument("until", None), complete=self.get_query_argument("complete", None),
            limit=limit, cursor=cursor))


class ThumbnailHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, imei: str, name: str) -> None:
        data = await self.videos.thumbnail(imei, name)
        self.set_header("Content-Type", "image/jpeg")
        # made once per video (a name never gets other content); revalidated by ETag after an hour
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(data)


class RangeNotSatisfiable(TruckxError):
    status, code = 416, "range_not_satisfiable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as ``(start, end_exclusive)``; None to serve the whole file (no header, a
    header we ignore as RFC 9110 allows: not bytes, several ranges, malformed). Raises
    :class:`RangeNotSatisfiable` when the range lies outside the file."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable("the range is outside the file")
        return max(0, size - n), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None  # last < first: syntactically invalid, ignored
    if start >= size:
        raise RangeNotSatisfiable("the range is outside the file")
    return start, min(end, size)


class AdminVideoHandler(AdminHandler):
    roles = {"GET": READ, "HEAD": READ, "DELETE": WRITE}

    def initialize(self) -> None:
        super().initialize()
        self._size: int | None = None

    async def get(self, imei: str, name: str) -> None:
        await self._serve(imei, name, body=True)

    async def head(self, imei: str, name: str) -> None:
        await self._serve(imei, name, body=False)

    async def delete(self, imei: str, name: str) -> None:
        force = parse_bool(self.get_query_argument("force", None), "force") or False
        await self.videos.delete(imei, name, force, self.actor)
        self.write_no_content()

    async def _serve(self, imei: str, name: str, body: bool) -> None:
        imei, name = validate_imei(imei), validate_file_name(name)
        video = await self.videos.find(imei, name)
        size, etag = video["size"], f'"{video["sha256"]}"'
        self._size = size
        self.set_header("Content-Type", mimetypes.guess_type(name)[0] or "application/octet-stream")
        self.set_header("Cache-Control", "private, no-cache")
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Etag", etag)
        self.set_header("X-Content-SHA256", video["sha256"])
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        if self.request.headers.get("If-None-Match") is not None and self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        wanted = self.request.headers.get("Range")
        if_range = self.request.headers.get("If-Range")
        if wanted and if_range is not None and if_range.strip() != etag:
            wanted = None  # the client's copy is of another version: send the whole file
        chosen = parse_range(wanted, size)
        start, end = chosen if chosen is not None else (0, size)
        if chosen is not None:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.set_header("Content-Length", str(end - start))
        if not body or end == start:
            self.finish()
            return
        try:
            async for chunk in self.videos.read(imei, name, start, end, _DOWNLOAD_CHUNK):
                self.write(chunk)
                await self.flush()  # wait for the socket: at most one chunk is held per download
        except StreamClosedError:
            return  # the client went away
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, RangeNotSatisfiable) and self._size is not None:
            self.set_header("Content-Range", f"bytes */{self._size}")
        super().write_error(status_code, **kwargs)


def routes() -> list:
    return [
        (r"/api/v1/device/videos/([^/]+)", DeviceVideoHandler),
        (r"/api/v1/admin/devices/([^/]+)/videos", AdminVideosHandler),
        (r"/api/v1/admin/devices/([^/]+)/videos/([^/]+)", AdminVideoHandler),
        (r"/api/v1/admin/devices/([^/]+)/videos/([^/]+)/thumbnail", ThumbnailHandler),
        (r"/api/v1/admin/videos", FleetVideosHandler),
    ]
