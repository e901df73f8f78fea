"""Locations: validating the points a device streams (the hot path), a device's track for admins, the
latest position of every device, and the live ``location`` events after each group commit."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

from .. import paging
from ..bus import Bus
from ..metrics import Metrics
from ..errors import InvalidArgument, NotFound
from ..models import (LocationPoint, device_time, format_time, imei_list, number, require_object, time_arg,
                      validate_imei)
from ..storage.base import LocationStore
from ..storage.sql.devices import DeviceRows

MAX_POINTS_PER_MESSAGE = 1000


def parse_point(imei: str, obj: object, now: dt.datetime) -> LocationPoint:
    point = obj if type(obj) is dict else require_object(obj, "point")
    return LocationPoint(
        imei=imei,
        ts=device_time(point, now),
        lat=number(point, "lat", -90, 90),  # type: ignore[arg-type]
        lon=number(point, "lon", -180, 180),  # type: ignore[arg-type]
        speed_kmh=number(point, "speed_kmh", 0, 1000, required=False),
        heading=number(point, "heading", 0, 360, required=False),
        alt_m=number(point, "alt_m", -1000, 20000, required=False),
        accuracy_m=number(point, "accuracy_m", 0, 1_000_000, required=False),
    )


def parse_seq(msg: Mapping[str, Any]) -> int:
    seq = msg.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq > 2**63 - 1:
        raise InvalidArgument("seq must be a non-negative integer")
    return seq


class LocationService:
    def __init__(self, store: LocationStore, devices: DeviceRows, bus: Bus, metrics: Metrics) -> None:
        self.store = store
        self.devices = devices
        self.bus = bus
        self.metrics = metrics

    async def track(self, imei: str, since: str | None, until: str | None, limit: int,
                    cursor: str | None) -> paging.Page[LocationPoint]:
        """One page of a device's track in ascending time."""
        imei = validate_imei(imei)
        start, end = time_arg(since, "since"), time_arg(until, "until")
        after = paging.decode(cursor, paging.time)
        if await self.devices.get(imei) is None:
            raise NotFound(f"device {imei} is not registered")
        return await paging.keyset(lambda n: self.store.track(imei, start, end, n, after[0] if after else None),
                                   limit, lambda p: [format_time(p.ts)])

    async def latest(self, imeis: Sequence[str]) -> list[dict[str, Any]]:
        wanted = imei_list(imeis)
        return [p.to_json() for p in await self.store.latest(wanted or None)]

    def flushed(self, points: Sequence[LocationPoint], seconds: float) -> None:
        """A group commit stored ``points``: count it, and publish each device's newest point."""
        self.metrics.points_stored.inc(len(points))
        self.metrics.flush_seconds.observe(seconds)
        if self.bus.active:
            newest: dict[str, LocationPoint] = {}
            for p in points:
                if p.imei not in newest or p.ts > newest[p.imei].ts:
                    newest[p.imei] = p
            for p in newest.values():
                self.bus.publish("location", {"imei": p.imei, "location": p.to_json()})
