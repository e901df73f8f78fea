"""Locations: a device's track (json, geojson, csv: paged; gpx, kml: the whole window, streamed and split
into trips) and the latest position of every device. (Points come in over the device WebSocket,
``device_socket.py``.)"""

from __future__ import annotations

from tornado.iostream import StreamClosedError

from ..domain.track_formats import FORMATS, GEOJSON_KINDS, STREAMED, track_csv, track_geojson, track_gpx, track_kml
from ..errors import InvalidArgument
from ..vocab import READ
from .base import P, AdminHandler

_STREAMED_TYPES = {"gpx": "application/gpx+xml", "kml": "application/vnd.google-earth.kml+xml"}


class TrackHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, imei: str) -> None:
        fmt = self.get_query_argument("format", "json") or "json"
        if fmt not in FORMATS:
            raise InvalidArgument("format must be one of " + ", ".join(FORMATS))
        since, until = self.get_query_argument("since", None), self.get_query_argument("until", None)
        if fmt in STREAMED:
            await self._stream(imei, fmt, since, until)
            return
        kind = self.get_query_argument("geojson_kind", "line") or "line"
        if kind not in GEOJSON_KINDS:
            raise InvalidArgument("geojson_kind must be one of " + ", ".join(GEOJSON_KINDS))
        limit, cursor = self.page_args()
        page = await self.locations.track(imei, since, until, limit, cursor)
        points, next_cursor = page.items, page.next_cursor
        if next_cursor is not None:
            self.set_header("X-Next-Cursor", next_cursor)
        if fmt == "json":
            self.write_json(page.json(lambda p: p.to_json()))
        elif fmt == "geojson":
            self.set_header("Content-Type", "application/geo+json")
            self.write_json(track_geojson(imei, points, next_cursor, kind))
        else:
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{imei}.csv"')
            self.finish(track_csv(points))

    async def _stream(self, imei: str, fmt: str, since: str | None, until: str | None) -> None:
        if self.get_query_argument("cursor", None):
            raise InvalidArgument(f"{fmt} exports are not paged: one response holds the whole window")
        self.page_args()  # a limit, if given, must still be valid (it is not used)
        events = await self.trips.track_events(imei, since, until)  # checks the request before any byte
        self.set_header("Content-Type", _STREAMED_TYPES[fmt])
        self.set_header("Content-Disposition", f'attachment; filename="{imei}.{fmt}"')
        render = track_gpx(imei, events) if fmt == "gpx" else track_kml(imei, events)
        try:
            async for chunk in render:
                self.write(chunk)
                await self.flush()  # wait for the socket: the export is never held whole
        except StreamClosedError:
            return  # the client went away
        self.finish()


class LatestLocationsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        self.write_json({"items": await self.locations.latest(self.query_list("imei"))})


def routes() -> list:
    return [
        (rf"/api/v1/admin/devices/(?P<imei>{P})/locations", TrackHandler),
        (r"/api/v1/admin/locations/latest", LatestLocationsHandler),
    ]
