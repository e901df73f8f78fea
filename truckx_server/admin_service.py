"""Admin plane operations: users, devices, alarm search and lifecycle, location exports, commands, and
the registry of live admin event feeds.

Handlers parse the request and call one method here; this module talks to the stores through
:class:`~truckx_server.services.Services` and raises domain errors only.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import math
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol, Sequence
from xml.sax.saxutils import escape, quoteattr

from . import auth
from .errors import Conflict, InvalidArgument, NotFound, Unauthorized
from .hub import CLOSE_CREDENTIALS_CHANGED, CLOSE_DISABLED, CLOSE_GOING_AWAY, command_json
from .models import (ALARM_STATUSES, ALARM_TYPES, ROLES, USERNAME_RE, LocationPoint, alarm_json, format_time,
                     parse_time, utcnow, validate_imei)

if TYPE_CHECKING:
    from .services import Services

FINAL_COMMAND_STATUSES = frozenset({"succeeded", "failed", "expired"})
#: how long a user check (the user exists with the token's role) is reused. A delete in this process
#: takes effect at once; one in another process of a multi-process deployment within this bound.
USER_CHECK_TTL_S = 3.0
MAX_WAIT_S = 60
PASSWORD_MIN, PASSWORD_MAX = 12, 1024
TRACK_FORMATS = ("json", "geojson", "gpx", "csv")
CSV_FIELDS = ("imei", "ts", "lat", "lon", "speed_kmh", "heading", "alt_m", "accuracy_m")


class EventFeed(Protocol):
    """A live admin event connection (``handlers.admin_ws.AdminEventsSocket``)."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def device_json(row: dict[str, Any], online: bool, last_seen: dt.datetime | None,
                last_location: LocationPoint | None) -> dict[str, Any]:
    return {"imei": row["imei"], "name": row.get("name"), "enabled": bool(row["enabled"]), "online": online,
            "last_seen": format_time(last_seen), "created_at": format_time(row.get("created_at")),
            "last_location": last_location.to_json() if last_location is not None else None}


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"username": row["username"], "role": row["role"], "created_at": format_time(row.get("created_at"))}


def _time_arg(value: str | None, name: str) -> dt.datetime | None:
    return parse_time(value, name) if value else None


def _imeis(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(validate_imei(v) for v in values))


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if not value:
        return None
    parts = value.split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 4 or not all(math.isfinite(n) for n in nums):
        raise InvalidArgument("bbox must be minLon,minLat,maxLon,maxLat (four numbers)")
    min_lon, min_lat, max_lon, max_lat = nums
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise InvalidArgument("bbox: longitudes must be in [-180, 180], latitudes in [-90, 90] with minLat <= maxLat")
    return min_lon, min_lat, max_lon, max_lat


def parse_bool(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{name} must be true or false")


def _cursor_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise InvalidArgument("cursor is not valid; pass next_cursor from the previous page")
    try:
        return parse_time(value, "cursor")
    except InvalidArgument:
        raise InvalidArgument("cursor is not valid; pass next_cursor from the previous page") from None


# -- location export formats ---------------------------------------------------------------------


def track_geojson(imei: str, points: Sequence[LocationPoint], next_cursor: str | None) -> dict[str, Any]:
    """A FeatureCollection: one LineString of the whole page (when it has two points or more) and one
    Point per fix carrying its time and readings; ``next_cursor`` is a foreign member."""
    def position(p: LocationPoint) -> list[float]:
        return [p.lon, p.lat] if p.alt_m is None else [p.lon, p.lat, p.alt_m]

    features: list[dict[str, Any]] = []
    if len(points) >= 2:
        features.append({"type": "Feature", "geometry": {"type": "LineString",
                                                          "coordinates": [position(p) for p in points]},
                         "properties": {"imei": imei, "kind": "track", "start": format_time(points[0].ts),
                                        "end": format_time(points[-1].ts),
                                        "times": [format_time(p.ts) for p in points]}})
    for p in points:
        props = {k: v for k, v in p.to_json().items() if k not in ("lat", "lon")}
        props["kind"] = "fix"
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": position(p)},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features, "next_cursor": next_cursor}


def track_gpx(imei: str, points: Sequence[LocationPoint]) -> str:
    """GPX 1.1: one track, one segment, a ``trkpt`` per fix with ``ele`` and ``time``."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<gpx version="1.1" creator="truckx" xmlns="http://www.topografix.com/GPX/1/1" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           'xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd">',
           f"<metadata><name>{escape(imei)}</name><time>{format_time(utcnow())}</time></metadata>",
           f"<trk><name>{escape(imei)}</name><trkseg>"]
    for p in points:
        ele = f"<ele>{p.alt_m!r}</ele>" if p.alt_m is not None else ""
        out.append(f"<trkpt lat={quoteattr(repr(p.lat))} lon={quoteattr(repr(p.lon))}>{ele}"
                   f"<time>{format_time(p.ts)}</time></trkpt>")
    out.append("</trkseg></trk></gpx>")
    return "\n".join(out) + "\n"


def track_csv(points: Sequence[LocationPoint]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for p in points:
        row = p.to_json()
        writer.writerow(["" if row.get(k) is None else row[k] for k in CSV_FIELDS])
    return buf.getvalue()


class AdminService:
    def __init__(self, services: "Services") -> None:
        self.s = services
        self._feeds: set[EventFeed] = set()
        self._closing = asyncio.Event()
        #: username -> (role, monotonic time the check expires)
        self._user_checks: dict[str, tuple[str, float]] = {}
        #: bumped by every change of users, so that a check read before the change is not cached after it
        self._users_generation = 0

    # -- principal -------------------------------------------------------------------------------

    async def check_user(self, principal: auth.Principal | None) -> None:
        """An admin token is honoured only while its user exists with that role: deleting a user
        revokes its tokens at once."""
        if principal is None or principal.is_device:
            return
        cached = self._user_checks.get(principal.sub)
        now = time.monotonic()
        if cached is not None and cached[1] > now and cached[0] == principal.role:
            return
        generation = self._users_generation
        user = await self.s.sql.get_user(principal.sub)
        if user is None or user["role"] != principal.role:
            self._user_checks.pop(principal.sub, None)
            raise Unauthorized("this user no longer exists or its role changed; log in again")
        if generation == self._users_generation:
            if len(self._user_checks) > 10_000:
                self._user_checks.clear()
            self._user_checks[principal.sub] = (user["role"], now + USER_CHECK_TTL_S)

    def forget_user(self, username: str) -> None:
        """A user was deleted or its role changed: its tokens are checked against the store again."""
        self._users_generation += 1
        self._user_checks.pop(username, None)

    # -- users -----------------------------------------------------------------------------------

    async def list_users(self) -> list[dict[str, Any]]:
        return [user_json(u) for u in await self.s.sql.list_users()]

    async def create_user(self, body: dict[str, Any]) -> dict[str, Any]:
        username, password, role = body.get("username"), body.get("password"), body.get("role", "viewer")
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise InvalidArgument("username must be 1-64 characters: letters, digits and . _ @ - "
                                  "(starting with a letter or digit)")
        if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
            raise InvalidArgument(f"password must be a string of {PASSWORD_MIN} to {PASSWORD_MAX} characters")
        if role not in ROLES:
            raise InvalidArgument("role must be admin or viewer")
        if await self.s.sql.get_user(username) is not None:
            raise Conflict(f"user {username!r} exists already")
        hashed = await asyncio.to_thread(auth.hash_password, password)
        now = utcnow()
        self.forget_user(username)
        await self.s.sql.create_user(username, hashed, role, now)
        return user_json({"username": username, "role": role, "created_at": now})

    async def delete_user(self, actor: str, username: str) -> None:
        if username == actor:
            raise Conflict("you cannot delete your own account")
        self.forget_user(username)  # before and after: a check running meanwhile caches nothing
        outcome = await self.s.sql.delete_user(username)
        self.forget_user(username)
        if outcome == "missing":
            raise NotFound(f"no user {username!r}")
        if outcome == "last_admin":
            raise Conflict("cannot delete the last admin")

    # -- devices ---------------------------------------------------------------------------------

    async def _device_items(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        hub = self.s.hub
        latest = {p.imei: p for p in await self.s.locations.latest([r["imei"] for r in rows])} if rows else {}
        return [device_json(r, hub.is_online(r["imei"]), hub.last_seen.get(r["imei"]) or r.get("last_seen"),
                            latest.get(r["imei"])) for r in rows]

    async def list_devices(self, limit: int, cursor: list[Any] | None) -> tuple[list[dict[str, Any]], list[Any] | None]:
        after = None
        if cursor is not None:
            if not isinstance(cursor[0], str):
                raise InvalidArgument("cursor is not valid; pass next_cursor from the previous page")
            after = cursor[0]
        rows = await self.s.sql.list_devices(limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        return await self._device_items(rows), ([rows[-1]["imei"]] if more else None)

    async def get_device(self, imei: str) -> dict[str, Any]:
        imei = validate_imei(imei)
        row = await self.s.sql.get_device(imei)
        if row is None:
            raise NotFound(f"device {imei} is not registered")
        return (await self._device_items([row]))[0]

    async def update_device(self, imei: str, body: dict[str, Any]) -> dict[str, Any]:
        imei = validate_imei(imei)
        values: dict[str, Any] = {}
        if "name" in body:
            name = body["name"]
            if name is not None and (not isinstance(name, str) or len(name) > 128):
                raise InvalidArgument("name must be a string of at most 128 characters, or null")
            values["name"] = name
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise InvalidArgument("enabled must be true or false")
            values["enabled"] = body["enabled"]
        if not values:
            raise InvalidArgument("give name and/or enabled")
        if not await self.s.sql.update_device(imei, **values):
            raise NotFound(f"device {imei} is not registered")
        if values.get("enabled") is False:
            # its tokens are refused from now on (services.authenticate_device); close the live session
            self.s.hub.disconnect(imei, CLOSE_DISABLED, "device disabled")
        return await self.get_device(imei)

    async def rotate_secret(self, imei: str) -> dict[str, Any]:
        imei = validate_imei(imei)
        secret = auth.new_device_secret()
        if not await self.s.sql.rotate_device_secret(imei, auth.hash_device_secret(self.s.device_key, secret)):
            raise NotFound(f"device {imei} is not registered")
        # tokens issued with the old secret are refused from now on; the live session goes too
        self.s.hub.disconnect(imei, CLOSE_CREDENTIALS_CHANGED, "device secret rotated")
        return {"imei": imei, "secret": secret}

    # -- alarms ----------------------------------------------------------------------------------

    async def search_alarms(self, *, imeis: Sequence[str], types: Sequence[str], statuses: Sequence[str],
                            since: str | None, until: str | None, bbox: str | None, has_video: str | None,
                            limit: int, cursor: list[Any] | None) -> tuple[list[dict[str, Any]], list[Any] | None]:
        kinds = [t.upper() for t in types]
        for t in kinds:
            if t not in ALARM_TYPES:
                raise InvalidArgument("type must be one of " + ", ".join(ALARM_TYPES))
        for st in statuses:
            if st not in ALARM_STATUSES:
                raise InvalidArgument("status must be one of " + ", ".join(ALARM_STATUSES))
        before = None
        if cursor is not None:
            if not isinstance(cursor[1], str):
                raise InvalidArgument("cursor is not valid; pass next_cursor from the previous page")
            before = (_cursor_time(cursor[0]), cursor[1])
        rows = await self.s.sql.search_alarms(
            imeis=_imeis(imeis), types=kinds, statuses=list(dict.fromkeys(statuses)),
            since=_time_arg(since, "since"), until=_time_arg(until, "until"), bbox=parse_bbox(bbox),
            has_video=parse_bool(has_video, "has_video"), before=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_key = [format_time(rows[-1]["ts"]), rows[-1]["id"]] if more else None
        return [alarm_json(r) for r in rows], next_key

    async def get_alarm(self, alarm_id: str) -> dict[str, Any]:
        alarm = await self.s.sql.get_alarm(alarm_id)
        if alarm is None:
            raise NotFound(f"no alarm {alarm_id}")
        return alarm_json(alarm)

    async def _transition(self, alarm_id: str, changed: bool, verb: str) -> dict[str, Any]:
        alarm = await self.get_alarm(alarm_id)
        if not changed:
            raise Conflict(f"cannot {verb} an alarm that is {alarm['status']}", status=alarm["status"])
        self.s.events.publish("alarm", {"imei": alarm["imei"], "alarm": alarm})
        return alarm

    async def ack_alarm(self, alarm_id: str, by: str, body: dict[str, Any]) -> dict[str, Any]:
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 2000):
            raise InvalidArgument("note must be a string of at most 2000 characters")
        changed = await self.s.sql.ack_alarm(alarm_id, by, note, utcnow())
        return await self._transition(alarm_id, changed, "acknowledge")

    async def clear_alarm(self, alarm_id: str, by: str) -> dict[str, Any]:
        changed = await self.s.sql.clear_alarm(alarm_id, by, utcnow())
        return await self._transition(alarm_id, changed, "clear")

    # -- locations -------------------------------------------------------------------------------

    async def track(self, imei: str, since: str | None, until: str | None, limit: int,
                    cursor: list[Any] | None) -> tuple[list[LocationPoint], list[Any] | None]:
        """One page of a device's track in ascending time; the key of the last point when more follow."""
        imei = validate_imei(imei)
        start, end = _time_arg(since, "since"), _time_arg(until, "until")
        after = _cursor_time(cursor[0]) if cursor is not None else None
        if await self.s.sql.get_device(imei) is None:
            raise NotFound(f"device {imei} is not registered")
        points = await self.s.locations.track(imei, start, end, limit + 1, after)
        more = len(points) > limit
        points = points[:limit]
        return points, ([format_time(points[-1].ts)] if more else None)

    async def latest(self, imeis: Sequence[str]) -> list[dict[str, Any]]:
        wanted = _imeis(imeis)
        return [p.to_json() for p in await self.s.locations.latest(wanted or None)]

    # -- commands --------------------------------------------------------------------------------

    async def get_command(self, command_id: str, wait_s: float = 0) -> dict[str, Any]:
        """The command; with ``wait_s`` it returns as soon as the command is final, or when the wait
        (or the server) ends."""
        try:
            command_id = str(uuid.UUID(command_id))
        except ValueError:
            raise NotFound(f"no command {command_id}") from None
        done = asyncio.Event()
        final: dict[str, Any] = {}

        # woken by the event bus (no polling); the event carries the final command, so it is not read again
        def on_event(event: dict[str, Any]) -> None:
            cmd = event.get("command")
            if (event.get("type") == "command_status" and isinstance(cmd, dict) and cmd.get("id") == command_id
                    and cmd.get("status") in FINAL_COMMAND_STATUSES):
                final.update(cmd)
                done.set()

        unsubscribe = self.s.events.subscribe(on_event) if wait_s > 0 else None
        try:
            cmd = await self.s.sql.get_command(command_id)
            if cmd is None:
                raise NotFound(f"no command {command_id}")
            if wait_s > 0 and cmd["status"] not in FINAL_COMMAND_STATUSES and not self._closing.is_set():
                closing = asyncio.ensure_future(self._closing.wait())
                finished = asyncio.ensure_future(done.wait())
                try:
                    await asyncio.wait((closing, finished), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closing.cancel()
                    finished.cancel()
                if final:
                    return dict(final)
                cmd = await self.s.sql.get_command(command_id) or cmd
            return command_json(cmd)
        finally:
            if unsubscribe is not None:
                unsubscribe()

    # -- live event feeds ------------------------------------------------------------------------

    def add_feed(self, feed: EventFeed) -> None:
        if self._closing.is_set():
            feed.close(CLOSE_GOING_AWAY, "server shutting down")
            return
        self._feeds.add(feed)

    def remove_feed(self, feed: EventFeed) -> None:
        self._feeds.discard(feed)

    @property
    def feed_count(self) -> int:
        return len(self._feeds)

    def close(self) -> None:
        """Server shutdown: close every admin event feed and release long-polling command waits."""
        self._closing.set()
        for feed in list(self._feeds):
            feed.close(CLOSE_GOING_AWAY, "server shutting down")
        self._feeds.clear()
