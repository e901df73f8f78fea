"""Locations: a device's track (json, geojson, gpx, csv) and the latest position of every device.
(Points come in over the device WebSocket, ``device_socket.py``.)"""

from __future__ import annotations

from ..domain.track_formats import FORMATS, track_csv, track_geojson, track_gpx
from ..errors import InvalidArgument
from ..vocab import READ
from .base import P, AdminHandler


class TrackHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, imei: str) -> None:
        fmt = self.get_query_argument("format", "json") or "json"
        if fmt not in FORMATS:
            raise InvalidArgument("format must be one of " + ", ".join(FORMATS))
        limit, cursor = self.page_args()
        page = await self.locations.track(imei, self.get_query_argument("since", None),
                                          self.get_query_argument("until", None), limit, cursor)
        points, next_cursor = page.items, page.next_cursor
        if next_cursor is not None:
            self.set_header("X-Next-Cursor", next_cursor)
        if fmt == "json":
            self.write_json(page.json(lambda p: p.to_json()))
        elif fmt == "geojson":
            self.set_header("Content-Type", "application/geo+json")
            self.write_json(track_geojson(imei, points, next_cursor))
        elif fmt == "gpx":
            self.set_header("Content-Type", "application/gpx+xml")
            self.set_header("Content-Disposition", f'attachment; filename="{imei}.gpx"')
            self.finish(track_gpx(imei, points))
        else:
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{imei}.csv"')
            self.finish(track_csv(points))


class LatestLocationsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self) -> None:
        self.write_json({"items": await self.locations.latest(self.query_list("imei"))})


def routes() -> list:
    return [
        (rf"/api/v1/admin/devices/(?P<imei>{P})/locations", TrackHandler),
        (r"/api/v1/admin/locations/latest", LatestLocationsHandler),
    ]
