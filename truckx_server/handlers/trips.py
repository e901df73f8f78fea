"""Trips and stops of a device over a window (at most 31 days), computed from its stored track."""

from __future__ import annotations

from ..vocab import READ
from .base import P, AdminHandler


class TripsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, imei: str) -> None:
        self.write_json(await self.trips.trips(imei, self.get_query_argument("since", None),
                                               self.get_query_argument("until", None)))


class StopsHandler(AdminHandler):
    roles = {"GET": READ}

    async def get(self, imei: str) -> None:
        self.write_json(await self.trips.stops(imei, self.get_query_argument("since", None),
                                               self.get_query_argument("until", None)))


def routes() -> list:
    return [
        (rf"/api/v1/admin/devices/(?P<imei>{P})/trips", TripsHandler),
        (rf"/api/v1/admin/devices/(?P<imei>{P})/stops", StopsHandler),
    ]
