"""Trips and stops, computed from a device's stored track, and the trip-split stream that the GPX and
KML exports render.

The track is read page by page (``PAGE`` points a query) and folded into a small state machine, so
memory does not grow with the window: a trip or a stop is kept as a summary, never as its points
(the exports stream each trip's points as they come and hold back only the fixes of a halt shorter
than ``--stop-min-s``, whose fate is not known yet).

Definitions (``T`` = ``--stop-min-s``, default 300 s):

- distance is geodesic on the WGS84 ellipsoid (``pyproj.Geod``, GeographicLib's algorithm),
  between consecutive fixes;
- a fix's speed is the one it reported; when it reported none, the distance from the previous fix
  over the time between them (or to the next fix, for the first fix and the first after a gap);
  a fix's course is its reported heading, else the azimuth of that same step;
- a fix is *moving* at 5 km/h or more;
- a *gap* is two consecutive fixes ``T`` or more apart;
- a *stop* is a span without movement: from its first slow fix (or from the fix before a gap) to the
  first moving fix after it (or the last fix of the window), that lasts ``T`` or more or holds a gap.
  Its location is where it began;
- a *trip* runs from the first moving fix after a stop (or the window's start) to the last moving fix
  before the next stop (or the window's end); shorter halts stay inside it. A trip needs two moving
  fixes: a lone moving fix between two stops (GPS drift in a car park, the complaint Traccar's users
  raise most about trip reports) is not a trip, and the two stops are one;
- a trip's alarms are those whose ``ts`` falls within it (read with one query over the window).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, AsyncIterator, Sequence

from pyproj import Geod

from ..errors import InvalidArgument, NotFound
from ..models import LocationPoint, format_time, time_arg, utcnow, validate_imei
from ..storage.base import LocationStore
from ..storage.sql.alarms import AlarmRows
from ..storage.sql.devices import DeviceRows

#: at this speed or more a fix is moving
MOVING_KMH = 5.0
#: the longest window of a trips or stops query
MAX_WINDOW = dt.timedelta(days=31)
#: the window when none is given: the last day
DEFAULT_WINDOW = dt.timedelta(days=1)
#: points read per query
PAGE = 1000
#: alarms attached to trips, at most, per window
MAX_ALARMS = 100_000

GEOD = Geod(ellps="WGS84")


@dataclasses.dataclass(slots=True)
class Fix:
    """A stored point with what the rules need: its speed and course (reported or derived), the
    geodesic step from the previous fix and whether a gap came before it."""

    point: LocationPoint
    speed_kmh: float
    course: float | None
    step_m: float
    gap_before: bool

    @property
    def moving(self) -> bool:
        return self.speed_kmh >= MOVING_KMH

    @property
    def ts(self) -> dt.datetime:
        return self.point.ts

    def derived(self) -> LocationPoint:
        """The point with its speed and course filled in where the device sent none (for exports)."""
        return dataclasses.replace(self.point, speed_kmh=self.speed_kmh, heading=self.course)


class Enricher:
    """Turns points (ascending ``ts``) into :class:`Fix` es, one point behind: a point without speed
    takes it from the step before it, or, when there is none, from the step after it."""

    def __init__(self, stop_min_s: float) -> None:
        self.gap = dt.timedelta(seconds=stop_min_s)
        self._pending: LocationPoint | None = None
        #: the step into the pending point: (metres, seconds, azimuth) or None
        self._back: tuple[float, float, float] | None = None
        self._pending_gap = False

    def push(self, points: Sequence[LocationPoint]) -> list[Fix]:
        if not points:
            return []
        chain = ([self._pending] if self._pending is not None else []) + list(points)
        az, _back, dist = GEOD.inv([p.lon for p in chain[:-1]], [p.lat for p in chain[:-1]],
                                   [p.lon for p in chain[1:]], [p.lat for p in chain[1:]]) if len(chain) > 1 \
            else ([], [], [])
        out: list[Fix] = []
        if self._pending is None:
            self._pending, self._back, self._pending_gap = chain[0], None, False
        for k in range(len(chain) - 1):  # pair k is (chain[k], chain[k + 1]); chain[k] is the pending point
            q = chain[k + 1]
            p = self._pending
            assert p is not None
            forward = (dist[k], (q.ts - p.ts).total_seconds(), az[k])
            gap = q.ts - p.ts >= self.gap
            out.append(self._resolve(p, None if gap else forward))
            self._pending, self._back, self._pending_gap = q, forward if not gap else None, gap
        return out

    def finish(self) -> list[Fix]:
        if self._pending is None:
            return []
        fix = self._resolve(self._pending, None)
        self._pending = None
        return [fix]

    def _resolve(self, p: LocationPoint, forward: tuple[float, float, float] | None) -> Fix:
        back = self._back
        speed = p.speed_kmh
        if speed is None:
            step = back if back is not None and back[1] > 0 else forward if forward is not None and forward[1] > 0 \
                else None
            speed = step[0] / step[1] * 3.6 if step is not None else 0.0
        course = p.heading
        if course is None:
            step = back if back is not None and back[0] > 0 else forward if forward is not None and forward[0] > 0 \
                else None
            course = step[2] % 360.0 if step is not None else None
        return Fix(p, speed, course, back[0] if back is not None else 0.0, self._pending_gap)


@dataclasses.dataclass(slots=True)
class Trip:
    start: Fix
    end: Fix
    distance_m: float
    max_speed_kmh: float
    alarms: list[str] = dataclasses.field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end.ts - self.start.ts).total_seconds()

    def json(self) -> dict[str, Any]:
        hours = self.duration_s / 3600
        km = self.distance_m / 1000
        return {"start": format_time(self.start.ts), "end": format_time(self.end.ts),
                "duration_s": round(self.duration_s, 3), "distance_km": round(km, 6),
                "max_speed_kmh": round(self.max_speed_kmh, 3),
                "avg_speed_kmh": round(km / hours, 3) if hours > 0 else 0.0,
                "start_location": {"lat": self.start.point.lat, "lon": self.start.point.lon},
                "end_location": {"lat": self.end.point.lat, "lon": self.end.point.lon},
                "alarms": list(self.alarms)}


@dataclasses.dataclass(slots=True)
class Stop:
    start: Fix
    end_ts: dt.datetime

    @property
    def duration_s(self) -> float:
        return (self.end_ts - self.start.ts).total_seconds()

    def json(self) -> dict[str, Any]:
        return {"start": format_time(self.start.ts), "end": format_time(self.end_ts),
                "duration_s": round(self.duration_s, 3),
                "location": {"lat": self.start.point.lat, "lon": self.start.point.lon}}


class _Open:
    """A trip being built: from its first moving fix to its last moving fix so far, and the fixes after
    that (a halt, ``tail``) that join it if it moves again."""

    __slots__ = ("start", "last", "moving", "distance_m", "max_speed", "tail_m", "tail_max", "tail", "head",
                 "confirmed")

    def __init__(self, fix: Fix, keep_points: bool) -> None:
        self.start = self.last = fix
        self.moving = 1
        self.distance_m = 0.0
        self.max_speed = fix.speed_kmh
        self.tail_m = 0.0
        self.tail_max = 0.0
        self.tail: list[Fix] | None = [] if keep_points else None
        #: the points before the trip is known to be one (two moving fixes), for exports
        self.head: list[Fix] | None = [fix] if keep_points else None
        self.confirmed = False


class Detector:
    """The state machine: :meth:`push` fixes in ascending time, then :meth:`finish`. ``trips`` and
    ``stops`` fill up as they are decided; with ``keep_points``, :meth:`drain` hands out the export
    stream: ``("begin", None)``, ``("point", LocationPoint)`` ..., ``("end", Trip)`` per trip."""

    def __init__(self, stop_min_s: float, keep_points: bool = False) -> None:
        self.min_stop = dt.timedelta(seconds=stop_min_s)
        self.keep_points = keep_points
        self.trips: list[Trip] = []
        self.stops: list[Stop] = []
        self._events: list[tuple[str, Any]] = []
        self._trip: _Open | None = None
        #: the stationary span in progress: its first fix, and whether it is a stop already
        self._still: Fix | None = None
        self._still_stop = False
        self._last: Fix | None = None

    def drain(self) -> list[tuple[str, Any]]:
        events, self._events = self._events, []
        return events

    # -- folding ---------------------------------------------------------------------------------

    def push(self, fixes: Sequence[Fix]) -> None:
        for fix in fixes:
            self._one(fix)

    def _one(self, f: Fix) -> None:
        prev = self._last
        self._last = f
        if f.gap_before and prev is not None:
            if self._still is None:
                self._still = prev  # the span starts where the reports stopped
            self._confirm_stop()
        if f.moving:
            if self._still is not None:
                if self._still_stop or f.ts - self._still.ts >= self.min_stop:
                    self._confirm_stop()
                    self._end_stop(f.ts)
                self._still, self._still_stop = None, False
            if self._trip is None:
                self._trip = _Open(f, self.keep_points)
            else:
                self._extend(f)
            return
        # a slow fix: the trip (if any) gets it as a tail; it starts or continues a stationary span
        trip = self._trip
        if trip is not None:
            trip.tail_m += f.step_m
            trip.tail_max = max(trip.tail_max, f.speed_kmh)
            if trip.tail is not None:
                trip.tail.append(f)
        if self._still is None:
            self._still = f
        if not self._still_stop and f.ts - self._still.ts >= self.min_stop:
            self._confirm_stop()

    def _extend(self, f: Fix) -> None:
        trip = self._trip
        assert trip is not None
        trip.distance_m += trip.tail_m + f.step_m
        trip.max_speed = max(trip.max_speed, trip.tail_max, f.speed_kmh)
        trip.moving += 1
        trip.last = f
        trip.tail_m, trip.tail_max = 0.0, 0.0
        if trip.tail is not None:
            tail, trip.tail = trip.tail + [f], []
            if trip.confirmed:
                self._events.extend(("point", x.derived()) for x in tail)
            else:
                assert trip.head is not None
                trip.head.extend(tail)
        if not trip.confirmed and trip.moving >= 2:
            trip.confirmed = True
            if trip.head is not None:
                self._events.append(("begin", None))
                self._events.extend(("point", x.derived()) for x in trip.head)
                trip.head = None

    def _confirm_stop(self) -> None:
        """The stationary span in progress is a stop: the open trip ends at its last moving fix (or, with
        a single moving fix, is no trip, and the stop before it goes on through this one)."""
        if self._still_stop:
            return
        self._still_stop = True
        trip, self._trip = self._trip, None
        if trip is None:
            return
        if trip.confirmed:
            summary = Trip(trip.start, trip.last, trip.distance_m, trip.max_speed)
            self.trips.append(summary)
            if self.keep_points:
                self._events.append(("end", summary))
        elif self.stops and self.stops[-1].end_ts == trip.start.ts:
            merged = self.stops.pop()  # the lone moving fix belongs to the stop around it
            assert self._still is not None
            self._still = merged.start
        elif self._still is not None and trip.start.ts < self._still.ts:
            self._still = trip.start  # a lone moving fix before the first stop: it is part of it

    def _end_stop(self, end_ts: dt.datetime) -> None:
        assert self._still is not None
        self.stops.append(Stop(self._still, end_ts))

    def finish(self) -> None:
        last = self._last
        if self._still is not None and last is not None:
            if self._still_stop or last.ts - self._still.ts >= self.min_stop:
                self._confirm_stop()
                self._end_stop(last.ts)
        trip, self._trip = self._trip, None
        if trip is not None and trip.confirmed:
            summary = Trip(trip.start, trip.last, trip.distance_m, trip.max_speed)
            self.trips.append(summary)
            if self.keep_points:
                self._events.append(("end", summary))
        self._still = None


def attach_alarms(trips: Sequence[Trip], alarms: Sequence[tuple[dt.datetime, str]]) -> None:
    """Give each trip the ids of the alarms (``(ts, id)`` in ascending ``ts``) within ``[start, end]``."""
    i = 0
    for trip in trips:
        while i < len(alarms) and alarms[i][0] < trip.start.ts:
            i += 1
        j = i
        while j < len(alarms) and alarms[j][0] <= trip.end.ts:
            trip.alarms.append(alarms[j][1])
            j += 1
        i = j


class TripService:
    def __init__(self, store: LocationStore, alarms: AlarmRows, devices: DeviceRows, stop_min_s: float) -> None:
        self.store = store
        self.alarm_rows = alarms
        self.devices = devices
        self.stop_min_s = stop_min_s

    async def _window(self, imei: str, since: str | None, until: str | None,
                      limit_window: bool = True) -> tuple[str, dt.datetime | None, dt.datetime | None]:
        imei = validate_imei(imei)
        start, end = time_arg(since, "since"), time_arg(until, "until")
        if limit_window:
            end = end or utcnow()
            start = start or end - DEFAULT_WINDOW
            if end - start > MAX_WINDOW:
                raise InvalidArgument("the window (since to until) may be at most 31 days")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument("until must be after since")
        if await self.devices.get(imei) is None:
            raise NotFound(f"device {imei} is not registered")
        return imei, start, end

    async def _fold(self, imei: str, start: dt.datetime | None, end: dt.datetime | None,
                    detector: Detector) -> AsyncIterator[None]:
        """Read the window page by page into ``detector``; yields after each page."""
        enricher = Enricher(self.stop_min_s)
        after: dt.datetime | None = None
        while True:
            page = await self.store.track(imei, start, end, PAGE, after)
            if page:
                detector.push(enricher.push(page))
                after = page[-1].ts
            if len(page) < PAGE:
                break
            yield None
        detector.push(enricher.finish())
        detector.finish()
        yield None

    async def _detect(self, imei: str, since: str | None, until: str | None) -> Detector:
        imei, start, end = await self._window(imei, since, until)
        detector = Detector(self.stop_min_s)
        async for _ in self._fold(imei, start, end, detector):
            pass
        if detector.trips:
            alarms = await self.alarm_rows.times(imei, detector.trips[0].start.ts, detector.trips[-1].end.ts,
                                                 MAX_ALARMS)
            attach_alarms(detector.trips, alarms)
        return detector

    async def trips(self, imei: str, since: str | None, until: str | None) -> dict[str, Any]:
        detector = await self._detect(imei, since, until)
        return {"items": [t.json() for t in detector.trips]}

    async def stops(self, imei: str, since: str | None, until: str | None) -> dict[str, Any]:
        detector = await self._detect(imei, since, until)
        return {"items": [s.json() for s in detector.stops]}

    async def track_events(self, imei: str, since: str | None,
                           until: str | None) -> AsyncIterator[tuple[str, Any]]:
        """For the GPX and KML exports: checks the request (errors are raised here, before anything is
        sent), then returns the stream ``("begin", None)``, ``("point", LocationPoint)``..., ``("end",
        trip summary JSON)`` per trip, then ``("stop", stop JSON)`` per stop. Any window length: the
        track is streamed."""
        imei, start, end = await self._window(imei, since, until, limit_window=False)
        return self._events(imei, start, end)

    async def _events(self, imei: str, start: dt.datetime | None,
                      end: dt.datetime | None) -> AsyncIterator[tuple[str, Any]]:
        detector = Detector(self.stop_min_s, keep_points=True)
        async for _ in self._fold(imei, start, end, detector):
            for kind, value in detector.drain():
                yield kind, value.json() if kind == "end" else value
        for stop in detector.stops:
            yield "stop", stop.json()
