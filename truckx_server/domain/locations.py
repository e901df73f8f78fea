"""Locations: validating the points a device streams (the hot path), a device's track for admins, the
latest position of every device, and the live ``location`` events after each group commit."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

import msgspec

from .. import paging
from ..bus import Bus
from ..metrics import Metrics
from ..errors import InvalidArgument, NotFound
from ..models import (EARLIEST_DEVICE_TIME, MAX_CLOCK_SKEW, LocationPoint, device_time, format_time, imei_list,
                      number, parse_time, require_object, time_arg, validate_imei)
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


# -- the fast path ---------------------------------------------------------------------------------
# A frame in the common shapes is decoded and type-checked in one pass by msgspec, straight into
# structs: no dict per frame, no per-field checks in Python but the ranges. It accepts a strict subset
# of what the general path (json + ``parse_point``) accepts: exactly the documented keys (any other key,
# a deep nesting in it included, goes the general way), numbers that are numbers (never booleans), an
# integer ``seq``. Whatever it does not accept, or accepts but finds out of range, returns None, and the
# caller runs the general path on the same text, which names the fault exactly as before. So both paths
# give one answer for every frame; the fast one only answers the valid frames sooner.


class _FastPoint(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    ts: str
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading: float | None = None
    alt_m: float | None = None
    accuracy_m: float | None = None


class _FastLocation(_FastPoint, tag_field="type", tag="location", forbid_unknown_fields=True, kw_only=True,
                    gc=False):
    seq: int


class _FastLocations(msgspec.Struct, tag_field="type", tag="locations", forbid_unknown_fields=True, gc=False):
    seq: int
    points: list[_FastPoint]


_FAST_DECODER = msgspec.json.Decoder(_FastLocation | _FastLocations)
_MAX_SEQ = 2**63 - 1


def fast_locations(imei: str, text: str, now: dt.datetime) -> tuple[str, int, list[LocationPoint]] | None:
    """``(type, seq, points)`` of a well-formed, entirely valid ``location`` or ``locations`` frame;
    None for anything else (the caller then takes the general path)."""
    try:
        msg = _FAST_DECODER.decode(text)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    seq = msg.seq
    if seq < 0 or seq > _MAX_SEQ:
        return None
    if type(msg) is _FastLocation:
        point = _fast_point(imei, msg, now)
        return None if point is None else ("location", seq, [point])
    raw = msg.points
    if not raw or len(raw) > MAX_POINTS_PER_MESSAGE:
        return None
    points = []
    for r in raw:
        point = _fast_point(imei, r, now)
        if point is None:
            return None
        points.append(point)
    return "locations", seq, points


def _fast_point(imei: str, p: _FastPoint, now: dt.datetime) -> LocationPoint | None:
    lat, lon, speed, heading, alt, accuracy = p.lat, p.lon, p.speed_kmh, p.heading, p.alt_m, p.accuracy_m
    # the same ranges as parse_point (NaN and inf fail them; strict JSON has neither anyway)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180
            and (speed is None or 0 <= speed <= 1000) and (heading is None or 0 <= heading <= 360)
            and (alt is None or -1000 <= alt <= 20000) and (accuracy is None or 0 <= accuracy <= 1_000_000)):
        return None
    try:
        ts = parse_time(p.ts)
    except InvalidArgument:
        return None
    if ts > now + MAX_CLOCK_SKEW or ts < EARLIEST_DEVICE_TIME:
        return None
    return LocationPoint(imei, ts, lat, lon, speed, heading, alt, accuracy)


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
