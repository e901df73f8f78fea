"""Alarms: a device reports one (idempotent on its id, alarm and files written atomically); admins search
them with filters, newest first, and move them ``active -> acknowledged -> cleared``."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from typing import Any, Callable, Sequence

from .. import paging
from ..bus import Bus
from ..errors import Conflict, InvalidArgument, NotFound
from ..metrics import Metrics
from ..models import (AlarmIn, AuditEntry, OutboxEvent, device_time, format_time, imei_list, number, parse_bool, require_object, time_arg,
                      utcnow, validate_file_name)
from ..storage.sql.alarms import AlarmRows
from ..vocab import ALARM_STATUSES, ALARM_TYPES

MAX_FILES = 100
#: a UUID as RFC 9562 writes it (what the OpenAPI format "uuid" means); any version
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
NOTE_MAX = 2000


def parse_alarm(body: object, now: dt.datetime) -> AlarmIn:
    obj = require_object(body)
    raw_id = obj.get("id")
    if raw_id is None:
        alarm_id, client_id = str(uuid.uuid4()), False
    elif isinstance(raw_id, str) and UUID_RE.fullmatch(raw_id):
        alarm_id, client_id = raw_id.lower(), True
    else:
        raise InvalidArgument("id must be a UUID (8-4-4-4-12 hex digits)")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind.isascii() or kind.upper() not in ALARM_TYPES:
        raise InvalidArgument("type must be one of " + ", ".join(ALARM_TYPES))
    files = obj.get("files", [])
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise InvalidArgument(f"files must be a list of at most {MAX_FILES} file names")
    names = tuple(dict.fromkeys(validate_file_name(f) for f in files))
    details = obj.get("details")
    if details is not None and not isinstance(details, dict):
        raise InvalidArgument("details must be a JSON object")
    if details:
        try:  # a number too large for a double (1e400) reads as infinity, which JSON cannot carry
            json.dumps(details, allow_nan=False)
        except ValueError:
            raise InvalidArgument("details must not hold numbers beyond the range of a double") from None
    return AlarmIn(
        id=alarm_id,
        type=kind.upper(),
        ts=device_time(obj, now),
        lat=number(obj, "lat", -90, 90),  # type: ignore[arg-type]
        lon=number(obj, "lon", -180, 180),  # type: ignore[arg-type]
        speed_kmh=number(obj, "speed_kmh", 0, 1000, required=False),
        files=names,
        details=details,
        client_id=client_id,
    )


def alarm_json(alarm: dict[str, Any]) -> dict[str, Any]:
    """A stored alarm (with its ``files``) as the API shows it."""
    return {
        "id": alarm["id"], "imei": alarm["imei"], "type": alarm["type"], "ts": format_time(alarm["ts"]),
        "lat": alarm["lat"], "lon": alarm["lon"], "speed_kmh": alarm.get("speed_kmh"),
        "details": alarm.get("details"), "status": alarm["status"],
        "received_at": format_time(alarm["received_at"]),
        "acknowledged_by": alarm.get("acknowledged_by"), "acknowledged_at": format_time(alarm.get("acknowledged_at")),
        "ack_note": alarm.get("ack_note"),
        "cleared_by": alarm.get("cleared_by"), "cleared_at": format_time(alarm.get("cleared_at")),
        "files": alarm.get("files", []),
    }


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        nums = [float(p) for p in value.split(",")]
    except ValueError:
        nums = []
    if len(nums) != 4 or not all(math.isfinite(n) for n in nums):
        raise InvalidArgument("bbox must be minLon,minLat,maxLon,maxLat (four numbers)")
    min_lon, min_lat, max_lon, max_lat = nums
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise InvalidArgument("bbox: longitudes must be in [-180, 180], latitudes in [-90, 90] with minLat <= maxLat")
    return min_lon, min_lat, max_lon, max_lat


def _announce(event_type: str, when: str) -> Callable[[dict[str, Any]], OutboxEvent]:
    """The webhook event of an alarm change, made from the alarm as stored in the change's transaction;
    it happened at the alarm's ``when`` column (``ts`` for a new alarm)."""
    def make(alarm: dict[str, Any]) -> OutboxEvent:
        return OutboxEvent(event_type, alarm_json(alarm), alarm.get(when) or utcnow())
    return make


class AlarmService:
    def __init__(self, rows: AlarmRows, bus: Bus, metrics: Metrics) -> None:
        self.rows = rows
        self.bus = bus
        self.metrics = metrics

    async def report(self, imei: str, body: Any) -> tuple[dict[str, Any], bool]:
        """A device's alarm: ``(alarm, created)``; a retry with the same id returns the stored one."""
        alarm = parse_alarm(body, utcnow())
        stored, created = await self.rows.insert(imei, alarm, utcnow(), _announce("alarm.created", "ts"))
        out = alarm_json(stored)
        if created:
            self.metrics.alarms.labels(alarm.type).inc()
            self.bus.publish("alarm", {"imei": imei, "alarm": out})
        return out, created

    async def search(self, *, imeis: Sequence[str], types: Sequence[str], statuses: Sequence[str],
                     since: str | None, until: str | None, bbox: str | None, has_video: str | None,
                     limit: int, cursor: str | None) -> dict[str, Any]:
        kinds = [t.upper() for t in types]
        for t, given in zip(kinds, types):
            if t not in ALARM_TYPES or not given.isascii():
                raise InvalidArgument("type must be one of " + ", ".join(ALARM_TYPES))
        for st in statuses:
            if st not in ALARM_STATUSES:
                raise InvalidArgument("status must be one of " + ", ".join(ALARM_STATUSES))
        after = paging.decode(cursor, paging.time, paging.text)
        filters = dict(imeis=imei_list(imeis), types=kinds, statuses=list(dict.fromkeys(statuses)),
                       since=time_arg(since, "since"), until=time_arg(until, "until"), bbox=parse_bbox(bbox),
                       has_video=parse_bool(has_video, "has_video"), before=tuple(after) if after else None)
        page = await paging.keyset(lambda n: self.rows.search(**filters, limit=n), limit,
                                   lambda r: [format_time(r["ts"]), r["id"]])
        return page.json(alarm_json)

    async def get(self, alarm_id: str) -> dict[str, Any]:
        alarm = await self.rows.get(alarm_id)
        if alarm is None:
            raise NotFound(f"no alarm {alarm_id}")
        return alarm_json(alarm)

    async def _transition(self, alarm_id: str, changed: bool, verb: str) -> dict[str, Any]:
        alarm = await self.get(alarm_id)
        if not changed:
            raise Conflict(f"cannot {verb} an alarm that is {alarm['status']}", status=alarm["status"])
        self.bus.publish("alarm", {"imei": alarm["imei"], "alarm": alarm})
        return alarm

    async def ack(self, alarm_id: str, by: str, body: dict[str, Any]) -> dict[str, Any]:
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
            raise InvalidArgument(f"note must be a string of at most {NOTE_MAX} characters")
        changed = await self.rows.ack(alarm_id, by, note, utcnow(),
                                      AuditEntry(by, "alarm.ack", alarm_id, {"note": note} if note else None),
                                      _announce("alarm.acknowledged", "acknowledged_at"))
        return await self._transition(alarm_id, changed, "acknowledge")

    async def clear(self, alarm_id: str, by: str) -> dict[str, Any]:
        changed = await self.rows.clear(alarm_id, by, utcnow(), AuditEntry(by, "alarm.clear", alarm_id),
                                        _announce("alarm.cleared", "cleared_at"))
        return await self._transition(alarm_id, changed, "clear")
