"""Geofences: the admin's fences (validation, JSON shape, audit), their compiled form cached on every
process, and the evaluation of the stored point stream against them.

Geometry: a GeoJSON ``Polygon`` or ``MultiPolygon`` (RFC 7946 positions ``[lon, lat]``, closed rings,
valid by OGC rules, at most :data:`MAX_VERTICES` positions, less than 180 degrees of longitude wide: a
fence crossing the antimeridian is split into a MultiPolygon, as RFC 7946 says), or ``{"type": "Circle",
"center": [lon, lat], "radius_m": R}``, a geodesic circle on the WGS84 ellipsoid (pyproj's ``Geod``). A
point on a polygon's boundary, or exactly ``R`` from a circle's center, is inside.

Evaluation (:class:`GeofenceEvaluator`) runs after the ack, off the hot path: the location batcher's
flushed callback hands over the points it stored, a background task evaluates them. Each device's points
are taken in ``ts`` order from the newest point evaluated before (the state is in the SQL store, so it
holds across restarts and processes): a point not newer than that is not evaluated (a resent point, late
data), the first point inside a fence is an ``enter``, a change between inside and outside from one point
to the next is a transition carrying the first point on the new side. Transitions, the new state and the
outbox events (webhooks ``geofence.enter``/``geofence.exit``) commit in one transaction, conditional on the
state the evaluation started from (``storage/sql/geofences.py``); then they are published on the events
feed. The queue is bounded in points: past it, points are not queued and their devices are caught up
later by reading the location store from their newest evaluated point.

Fences are compiled once (shapely, prepared geometries; an STRtree from :data:`STRTREE_FROM` fences on);
a fence changed here is compiled at once, and every other process reads it again when the bus says it
changed (``vocab.GEOFENCES_CHANGED`` with its id); after a bus outage every fence is read again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import math
import time
import uuid
from typing import Any, Sequence

import numpy as np
import shapely
from pyproj import Geod

from .. import paging
from ..bus import RESYNC, Bus
from ..errors import Conflict, InvalidArgument, NotFound
from ..metrics import Metrics
from ..models import (AuditEntry, LocationPoint, format_time, imei_list, require_object, time_arg, utcnow,
                      validate_imei)
from ..storage.base import LocationStore
from ..storage.sql.geofences import DeviceState, DeviceUpdate, GeofenceRows, event_json
from ..vocab import GEOFENCES_CHANGED

log = logging.getLogger("truckx.geofences")

#: bounds on what an admin may create (every one is a 400, or a 409 for the number of fences)
MAX_FENCES = 10_000
MAX_VERTICES = 10_000
MAX_POLYGONS = 1_000
MAX_RINGS = 100
MIN_RADIUS_M, MAX_RADIUS_M = 1.0, 1_000_000.0
MAX_IMEIS = 1_000
NAME_MAX = 128
MAX_FILTER_VALUES = 100
#: from this many fences on, candidates are found with an STRtree rather than by testing every fence
STRTREE_FROM = 16
#: points waiting for evaluation; past it, devices are caught up from the location store instead
QUEUE_POINTS = 200_000
#: at most this many queued points are evaluated together (one transaction)
EVALUATE_POINTS = 20_000
#: at least this long between two evaluations of queued points (unless EVALUATE_POINTS are waiting)
EVALUATE_INTERVAL_S = 0.25
#: evaluation states kept in memory (least recently used dropped first)
CACHED_DEVICES = 100_000
#: points read from the location store per catch-up page
CATCH_UP_PAGE = 1_000
#: an evaluation whose device state moved meanwhile is evaluated again at most this many times per batch
RETRIES = 3

WGS84 = Geod(ellps="WGS84")
#: shortest length of one degree of latitude on WGS84 (at the equator), with a margin
_M_PER_DEG_LAT = 110_574.0 * 0.99


# -- validation ------------------------------------------------------------------------------------

def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{what} must be a finite number")
    return float(value)


def _position(value: Any, what: str) -> tuple[float, float]:
    if not isinstance(value, list) or not 2 <= len(value) <= 3:
        raise InvalidArgument(f"{what} must be a position [lon, lat] (an optional altitude is ignored)")
    lon, lat = _number(value[0], f"{what}[0] (lon)"), _number(value[1], f"{what}[1] (lat)")
    if len(value) == 3:
        _number(value[2], f"{what}[2] (altitude)")
    if not -180 <= lon <= 180:
        raise InvalidArgument(f"{what}: longitude must be between -180 and 180")
    if not -90 <= lat <= 90:
        raise InvalidArgument(f"{what}: latitude must be between -90 and 90")
    return lon, lat


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_VERTICES

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise InvalidArgument(f"geometry: at most {MAX_VERTICES} positions in all")


def _rings(value: Any, what: str, budget: _Budget) -> list[list[tuple[float, float]]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RINGS:
        raise InvalidArgument(f"{what} must be a list of 1 to {MAX_RINGS} linear rings (the outer ring first)")
    rings = []
    for i, ring in enumerate(value):
        where = f"{what}[{i}]"
        if not isinstance(ring, list) or len(ring) < 4:
            raise InvalidArgument(f"{where} must be a linear ring of at least 4 positions")
        budget.take(len(ring))
        points = [_position(p, f"{where}[{j}]") for j, p in enumerate(ring)]
        if points[0] != points[-1]:
            raise InvalidArgument(f"{where} must be closed: its last position equal to its first")
        rings.append(points)
    return rings


def _polygon(rings: list[list[tuple[float, float]]]) -> shapely.Polygon:
    return shapely.Polygon(rings[0], rings[1:])


def parse_geometry(value: Any) -> dict[str, Any]:
    """A fence geometry, checked and normalised (positions as ``[lon, lat]`` floats)."""
    geometry = require_object(value, "geometry")
    kind = geometry.get("type")
    if kind == "Circle":
        center = _position(geometry.get("center"), "geometry.center")
        radius = _number(geometry.get("radius_m"), "geometry.radius_m")
        if not MIN_RADIUS_M <= radius <= MAX_RADIUS_M:
            raise InvalidArgument(f"geometry.radius_m must be between {MIN_RADIUS_M:g} and {MAX_RADIUS_M:g} metres")
        return {"type": "Circle", "center": list(center), "radius_m": radius}
    budget = _Budget()
    if kind == "Polygon":
        rings = _rings(geometry.get("coordinates"), "geometry.coordinates", budget)
        shape: shapely.Geometry = _polygon(rings)
        coordinates: Any = [[list(p) for p in ring] for ring in rings]
    elif kind == "MultiPolygon":
        polygons = geometry.get("coordinates")
        if not isinstance(polygons, list) or not 1 <= len(polygons) <= MAX_POLYGONS:
            raise InvalidArgument(f"geometry.coordinates must be a list of 1 to {MAX_POLYGONS} polygons")
        parsed = [_rings(p, f"geometry.coordinates[{i}]", budget) for i, p in enumerate(polygons)]
        shape = shapely.MultiPolygon([_polygon(rings) for rings in parsed])
        coordinates = [[[list(p) for p in ring] for ring in rings] for rings in parsed]
    else:
        raise InvalidArgument("geometry.type must be Polygon, MultiPolygon or Circle")
    if not shape.is_valid:
        raise InvalidArgument(f"geometry is not a valid {kind}: {shapely.is_valid_reason(shape)}")
    if shape.is_empty or shape.area <= 0:
        raise InvalidArgument("geometry encloses no area")
    minx, _, maxx, _ = shape.bounds
    if maxx - minx >= 180:
        raise InvalidArgument("geometry must be less than 180 degrees of longitude wide; split a fence that "
                              "crosses the antimeridian into a MultiPolygon")
    return {"type": kind, "coordinates": coordinates}


def parse_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX:
        raise InvalidArgument(f"name must be a non-blank string of at most {NAME_MAX} characters")
    return value


def parse_imeis(value: Any) -> list[str] | None:
    """``imeis``: null (or absent) for every device, else 1 to :data:`MAX_IMEIS` IMEIs."""
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IMEIS:
        raise InvalidArgument(f"imeis must be null (every device) or a list of 1 to {MAX_IMEIS} IMEIs")
    return list(dict.fromkeys(validate_imei(v) for v in value))


def fence_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "geometry": row["geometry"], "imeis": row["imeis"],
            "created_by": row.get("created_by"), "created_at": format_time(row["created_at"]),
            "updated_at": format_time(row["updated_at"])}


def _fence_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"no geofence {value[:64]}") from None


# -- the compiled fences ---------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class Fence:
    id: str
    name: str
    imeis: frozenset[str] | None
    #: prepared polygon or multipolygon; None for a circle
    shape: shapely.Geometry | None
    center: tuple[float, float] | None = None
    radius_m: float = 0.0
    #: (minlon, minlat, maxlon, maxlat): everything inside lies within it
    bounds: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)


def _circle_bounds(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """A lon/lat box holding the geodesic circle (generous: candidates are checked exactly)."""
    dlat = radius_m / _M_PER_DEG_LAT
    lo, hi = lat - dlat, lat + dlat
    if lo <= -89.0 or hi >= 89.0:
        return (-180.0, max(-90.0, lo), 180.0, min(90.0, hi))
    dlon = dlat / math.cos(math.radians(max(abs(lo), abs(hi))))
    if lon - dlon < -180 or lon + dlon > 180:
        return (-180.0, lo, 180.0, hi)
    return (lon - dlon, lo, lon + dlon, hi)


def compile_fence(row: dict[str, Any]) -> Fence:
    g = row["geometry"]
    imeis = frozenset(row["imeis"]) if row.get("imeis") is not None else None
    if g["type"] == "Circle":
        lon, lat = float(g["center"][0]), float(g["center"][1])
        radius = float(g["radius_m"])
        return Fence(row["id"], row["name"], imeis, None, (lon, lat), radius, _circle_bounds(lon, lat, radius))
    if g["type"] == "Polygon":
        shape: shapely.Geometry = _polygon(g["coordinates"])
    else:
        shape = shapely.MultiPolygon([_polygon(rings) for rings in g["coordinates"]])
    shapely.prepare(shape)
    return Fence(row["id"], row["name"], imeis, shape, bounds=tuple(shape.bounds))  # type: ignore[arg-type]


class FenceIndex:
    """Every fence, compiled, and which of them contain given points."""

    def __init__(self, fences: Sequence[Fence]) -> None:
        self.fences = list(fences)
        self.ids = [f.id for f in self.fences]
        self.everyone = [i for i, f in enumerate(self.fences) if f.imeis is None]
        self._everyone_ids = frozenset(self.ids[i] for i in self.everyone)
        self.by_imei: dict[str, list[int]] = {}
        for i, f in enumerate(self.fences):
            for imei in f.imeis or ():
                self.by_imei.setdefault(imei, []).append(i)
        self._bounds = np.array([f.bounds for f in self.fences], dtype=float).reshape(-1, 4)
        # per fence, as arrays indexed by candidate pairs (no Python loop per pair)
        self._is_circle = np.array([f.shape is None for f in self.fences], dtype=bool)
        self._restricted = np.array([f.imeis is not None for f in self.fences], dtype=bool)
        self._alone = [frozenset((f.id,)) for f in self.fences]
        self._shapes = np.empty(len(self.fences), dtype=object)
        self._shapes[:] = [f.shape for f in self.fences]
        self._c_lon = np.array([f.center[0] if f.center else 0.0 for f in self.fences], dtype=float)
        self._c_lat = np.array([f.center[1] if f.center else 0.0 for f in self.fences], dtype=float)
        self._radius = np.array([f.radius_m for f in self.fences], dtype=float)
        self._tree = (shapely.STRtree([shapely.box(*f.bounds) for f in self.fences])
                      if len(self.fences) >= STRTREE_FROM else None)

    def __len__(self) -> int:
        return len(self.fences)

    def concerns(self, imei: str) -> bool:
        return bool(self.everyone) or imei in self.by_imei

    def applicable(self, imei: str) -> frozenset[str]:
        """The ids of the fences that apply to ``imei``."""
        own = self.by_imei.get(imei)
        return self._everyone_ids if not own else self._everyone_ids | {self.ids[i] for i in own}

    def _candidates(self, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point index, fence index) pairs whose fence's box holds the point."""
        if self._tree is not None:
            pairs = self._tree.query(shapely.points(lons, lats), predicate="intersects")
            return pairs[0], pairs[1]
        b = self._bounds
        hit = ((lons[:, None] >= b[None, :, 0]) & (lons[:, None] <= b[None, :, 2])
               & (lats[:, None] >= b[None, :, 1]) & (lats[:, None] <= b[None, :, 3]))
        pi, fi = np.nonzero(hit)
        return pi, fi

    def containing(self, imeis: Sequence[str], lons: Sequence[float], lats: Sequence[float]) -> list[frozenset[str]]:
        """For each point ``(imeis[k], lons[k], lats[k])``, the ids of the fences that apply to its device
        and contain it."""
        out: list[frozenset[str]] = [NOWHERE] * len(imeis)
        if not self.fences or not len(imeis):
            return out
        lon_a, lat_a = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
        pi, fi = self._candidates(lon_a, lat_a)
        if not len(pi):
            return out
        inside = np.zeros(len(pi), dtype=bool)
        is_circle = self._is_circle[fi]
        poly = ~is_circle
        if poly.any():
            inside[poly] = shapely.intersects_xy(self._shapes[fi[poly]], lon_a[pi[poly]], lat_a[pi[poly]])
        if is_circle.any():
            inside[is_circle] = _within(self._c_lon[fi[is_circle]], self._c_lat[fi[is_circle]],
                                        lon_a[pi[is_circle]], lat_a[pi[is_circle]], self._radius[fi[is_circle]])
        pi, fi = pi[inside], fi[inside]
        restricted = self._restricted[fi]
        if restricted.any():  # fences for some devices only: keep the pairs of those devices
            keep = ~restricted
            for k in np.nonzero(restricted)[0].tolist():
                keep[k] = imeis[pi[k]] in self.fences[fi[k]].imeis  # type: ignore[operator]
            pi, fi = pi[keep], fi[keep]
        order = np.argsort(pi, kind="stable")
        pi, fi = pi[order], fi[order]
        points, starts, counts = np.unique(pi, return_index=True, return_counts=True)
        single = counts == 1
        for p, f in zip(points[single].tolist(), fi[starts[single]].tolist()):
            out[p] = self._alone[f]  # the usual case: in one fence
        for p, start, n in zip(points[~single].tolist(), starts[~single].tolist(), counts[~single].tolist()):
            out[p] = frozenset(self.ids[f] for f in fi[start:start + n].tolist())
        return out


def _within(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Whether each point 2 is at most ``radius`` metres from point 1, geodesically on WGS84. A great-circle
    distance (cheap, vectorised) settles the pairs clearly inside or outside; it differs from the
    ellipsoid's geodesic by less than 0.6%, so only the pairs within that margin of the rim are measured on
    the ellipsoid (PROJ's geodesic, Karney's algorithm)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    sphere = 2 * _R_MEAN * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    margin = radius * 0.006 + 1.0
    out = sphere <= radius - margin
    near = np.abs(sphere - radius) < margin
    if near.any():
        _, _, dist = WGS84.inv(lon1[near], lat1[near], lon2[near], lat2[near])
        out[near] = np.asarray(dist) <= radius[near]
    return out


#: the mean radius of the earth (IUGG), for the great-circle first pass of :func:`_within`
_R_MEAN = 6_371_008.8

#: the fences holding a point that is in none
NOWHERE: frozenset[str] = frozenset()

EMPTY = FenceIndex([])


# -- the service -----------------------------------------------------------------------------------

class GeofenceService:
    """Fences (admin CRUD), their transitions (admin reads), and the evaluator of the point stream."""

    def __init__(self, rows: GeofenceRows, location_store: LocationStore, bus: Bus, metrics: Metrics,
                 queue_points: int = QUEUE_POINTS) -> None:
        self.rows = rows
        self.bus = bus
        self.index = EMPTY
        self.evaluator = GeofenceEvaluator(self, rows, location_store, bus, metrics, queue_points)
        #: the compiled fences by id, each with the updated_at it was compiled from
        self._fences: dict[str, Fence] = {}
        self._stamps: dict[str, dt.datetime] = {}
        #: fences deleted (the newest ones): a read of one made before its deletion is not applied
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._announcing: str | None = None
        self._generation = 0
        self._reloads: set[asyncio.Task[None]] = set()
        bus.on_invalidate(self._invalidated)

    async def start(self) -> None:
        await self.reload()
        self.evaluator.start()

    async def aclose(self, timeout_s: float = 10.0) -> None:
        reloads = list(self._reloads)
        for task in reloads:
            task.cancel()
        # awaited: a reload cancelled mid-query must give its connection back before the store closes
        await asyncio.gather(*reloads, return_exceptions=True)
        await self.evaluator.close(timeout_s)

    # -- the cache ---------------------------------------------------------------------------------

    async def reload(self) -> None:
        """Compile every fence (at start, and when the bus may have lost messages)."""
        while True:
            generation = self._generation
            rows = await self.rows.all()
            if generation == self._generation:
                self._fences = {r["id"]: compile_fence(r) for r in rows}
                self._stamps = {r["id"]: r["updated_at"] for r in rows}
                self.index = FenceIndex(list(self._fences.values()))
                return

    def _apply(self, fence_id: str, row: dict[str, Any] | None) -> None:
        """Put one fence as read (None: deleted) into the compiled index; a read older than what the index
        has (by ``updated_at``), or of a fence deleted meanwhile, is ignored."""
        self._generation += 1  # a full reload running now reads again
        if row is None:
            self._gone[fence_id] = None
            while len(self._gone) > MAX_FENCES:
                self._gone.popitem(last=False)
            self._fences.pop(fence_id, None)
            self._stamps.pop(fence_id, None)
        else:
            if fence_id in self._gone or row["updated_at"] < self._stamps.get(fence_id, row["updated_at"]):
                return
            self._fences[fence_id] = compile_fence(row)
            self._stamps[fence_id] = row["updated_at"]
        self.index = FenceIndex(list(self._fences.values()))

    async def refresh(self, fence_id: str) -> None:
        """Read one fence again (it changed on another process) and recompile the index."""
        self._apply(fence_id, await self.rows.get(fence_id))

    def _invalidated(self, kind: str, key: str) -> None:
        if kind not in (GEOFENCES_CHANGED, RESYNC) or (kind == GEOFENCES_CHANGED and key == self._announcing):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._refresh_logged(key if kind == GEOFENCES_CHANGED else None))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _refresh_logged(self, fence_id: str | None) -> None:
        try:
            await (self.refresh(fence_id) if fence_id else self.reload())
        except Exception as exc:
            log.warning("geofence reload failed: %s", type(exc).__name__)

    def _changed(self, fence_id: str, row: dict[str, Any] | None) -> None:
        """After a change here: compile it at once (points flushed after the answer see it), and tell
        the other processes (they read the fence again)."""
        self._apply(fence_id, row)
        self._announcing = fence_id
        try:
            self.bus.invalidate(GEOFENCES_CHANGED, fence_id)
        finally:
            self._announcing = None

    # -- admin -------------------------------------------------------------------------------------

    async def create(self, body: Any, actor: str) -> dict[str, Any]:
        obj = require_object(body)
        now = utcnow()
        row = {"id": str(uuid.uuid4()), "name": parse_name(obj.get("name")),
               "geometry": parse_geometry(obj.get("geometry")), "imeis": parse_imeis(obj.get("imeis")),
               "created_by": actor, "created_at": now, "updated_at": now}
        audit = AuditEntry(actor, "geofence.create", row["id"],
                           {"name": row["name"], "type": row["geometry"]["type"], "imeis": row["imeis"]}, at=now)
        if not await self.rows.create(row, audit, limit=MAX_FENCES):
            raise Conflict(f"there are {MAX_FENCES} geofences already; delete one first")
        self._changed(row["id"], row)
        return fence_json(row)

    async def list(self, limit: int, cursor: str | None) -> dict[str, Any]:
        after = paging.decode(cursor, paging.time, paging.text)
        page = await paging.keyset(lambda n: self.rows.page(n, tuple(after) if after else None), limit,  # type: ignore[arg-type]
                                   lambda r: [format_time(r["created_at"]), r["id"]])
        return page.json(fence_json)

    async def get(self, fence_id: str) -> dict[str, Any]:
        fence_id = _fence_id(fence_id)
        row = await self.rows.get(fence_id)
        if row is None:
            raise NotFound(f"no geofence {fence_id}")
        return fence_json(row)

    async def update(self, fence_id: str, body: Any, actor: str) -> dict[str, Any]:
        fence_id = _fence_id(fence_id)
        obj = require_object(body)
        values: dict[str, Any] = {}
        if "name" in obj:
            values["name"] = parse_name(obj["name"])
        if "geometry" in obj:
            values["geometry"] = parse_geometry(obj["geometry"])
        if "imeis" in obj:
            values["imeis"] = parse_imeis(obj["imeis"])
        if not values:
            raise InvalidArgument("nothing to change: give name, geometry or imeis")
        detail = {k: (v["type"] if k == "geometry" else v) for k, v in values.items()}
        now = utcnow()
        row = await self.rows.update(fence_id, {**values, "updated_at": now},
                                     AuditEntry(actor, "geofence.update", fence_id, detail, at=now))
        if row is None:
            raise NotFound(f"no geofence {fence_id}")
        self._changed(fence_id, row)
        return fence_json(row)

    async def delete(self, fence_id: str, actor: str) -> None:
        fence_id = _fence_id(fence_id)
        if not await self.rows.delete(fence_id, AuditEntry(actor, "geofence.delete", fence_id)):
            raise NotFound(f"no geofence {fence_id}")
        self._changed(fence_id, None)

    async def events(self, *, imeis: Sequence[str], fence_ids: Sequence[str], since: str | None,
                     until: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        """Transitions, newest first, filtered by device, fence and time; keyset-paged."""
        if len(imeis) > MAX_FILTER_VALUES or len(fence_ids) > MAX_FILTER_VALUES:
            raise InvalidArgument(f"at most {MAX_FILTER_VALUES} values per filter")
        ids = []
        for value in fence_ids:
            try:
                ids.append(str(uuid.UUID(value)))
            except ValueError:
                raise InvalidArgument("geofence_id must be a geofence's id (a UUID)") from None
        after = paging.decode(cursor, paging.time, paging.text)
        filters = dict(imeis=imei_list(imeis), fence_ids=list(dict.fromkeys(ids)), since=time_arg(since, "since"),
                       until=time_arg(until, "until"), before=tuple(after) if after else None)
        page = await paging.keyset(lambda n: self.rows.search_events(**filters, limit=n), limit,  # type: ignore[arg-type]
                                   lambda r: [format_time(r["ts"]), r["id"]])
        return page.json(event_json)


# -- evaluation ------------------------------------------------------------------------------------

def evaluate(imei: str, state: DeviceState, points: Sequence[LocationPoint], inside: Sequence[frozenset[str]] | Sequence[set[str]],
             applicable: frozenset[str] | set[str], now: dt.datetime) -> DeviceUpdate | None:
    """The outcome of ``points`` of one device (any order, ``inside[k]`` the fences holding
    ``points[k]``) from ``state``; None when no point is newer than the newest evaluated before."""
    order = sorted(range(len(points)), key=lambda k: points[k].ts)
    last = state.last_ts
    before = {f for f in state.inside if f in applicable}
    current = set(before)
    since = dict(state.inside)
    update: DeviceUpdate | None = None
    reentered: set[str] = set()
    for k in order:
        p = points[k]
        if last is not None and p.ts <= last:
            continue  # resent, repeated in this batch, or late: never evaluated
        if update is None:
            update = DeviceUpdate(imei, state.version, p.ts)
        now_in = inside[k]
        if now_in != current:
            for fence_id, transition in ([(f, "enter") for f in sorted(now_in - current)]
                                         + [(f, "exit") for f in sorted(current - now_in)]):
                update.events.append({"id": str(uuid.uuid4()), "geofence_id": fence_id, "imei": imei,
                                      "transition": transition, "ts": p.ts, "lat": p.lat, "lon": p.lon,
                                      "created_at": now})
                if transition == "enter":
                    since[fence_id] = p.ts
                    if fence_id in before:
                        reentered.add(fence_id)
            current = now_in  # never changed afterwards
        last = p.ts
    if update is None:
        return None
    update.last_ts = last  # type: ignore[assignment]
    gone = set(state.inside) - applicable  # fences deleted, or no longer applying to this device
    update.exits = sorted((before - current) | gone | (reentered & current))
    update.enters = [(f, since[f]) for f in sorted((current - before) | (reentered & current))]
    return update


def compute(index: FenceIndex, states: dict[str, DeviceState], points: dict[str, list[LocationPoint]],
            now: dt.datetime) -> dict[str, DeviceUpdate]:
    """The update of each device whose ``points`` (any order) include some newer than its state's newest
    evaluated one. Pure: reads ``index`` and ``states``, changes neither (it runs in a worker thread)."""
    todo: dict[str, list[LocationPoint]] = {}
    for imei, pts in points.items():
        last = states[imei].last_ts
        newer = pts if last is None else [p for p in pts if p.ts > last]
        if newer:
            todo[imei] = newer
    flat = [p for pts in todo.values() for p in pts]
    inside_flat = index.containing([p.imei for p in flat], [p.lon for p in flat], [p.lat for p in flat])
    updates: dict[str, DeviceUpdate] = {}
    k = 0
    for imei, pts in todo.items():
        update = evaluate(imei, states[imei], pts, inside_flat[k:k + len(pts)], index.applicable(imei), now)
        k += len(pts)
        if update is not None:
            updates[imei] = update
    return updates


def _after(state: DeviceState, update: DeviceUpdate) -> DeviceState:
    inside = {f: s for f, s in state.inside.items() if f not in set(update.exits)}
    inside.update(dict(update.enters))
    return DeviceState(update.last_ts, update.new_version, inside)


class GeofenceEvaluator:
    """The background evaluation of stored points (see the module's docstring)."""

    def __init__(self, service: GeofenceService, rows: GeofenceRows, location_store: LocationStore, bus: Bus,
                 metrics: Metrics, queue_points: int) -> None:
        self.service = service
        self.rows = rows
        self.location_store = location_store
        self.bus = bus
        self.metrics = metrics
        self.queue_points = queue_points
        self._queue: collections.deque[Sequence[LocationPoint]] = collections.deque()
        self._queued = 0
        #: devices to read from the location store, with the oldest point time not queued for them
        self._catch_up: dict[str, dt.datetime] = {}
        self._states: collections.OrderedDict[str, DeviceState] = collections.OrderedDict()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        #: when the last evaluation of queued points began; drain() sets _urgent to skip the wait
        self._last = 0.0
        self._urgent = False
        metrics.geofence_queue_points.set_function(lambda: self._queued)
        metrics.geofence_pending_devices.set_function(lambda: len(self._catch_up))

    @property
    def queued_points(self) -> int:
        return self._queued

    def start(self) -> None:
        if self._task is None:
            self._idle.clear()  # until the catch-up at start is done
            self._task = asyncio.create_task(self._run(), name="geofence-evaluator")

    def offer(self, points: Sequence[LocationPoint]) -> None:
        """The batcher stored ``points`` (called after the ack, on the event loop): queue them."""
        if not len(self.service.index) or not points:
            return
        if self._queued + len(points) > self.queue_points:
            self.metrics.geofence_points_deferred.inc(len(points))
            for p in points:
                self._defer(p.imei, p.ts)
        else:
            self._queue.append(points)
            self._queued += len(points)
        self._idle.clear()
        self._wake.set()

    def _defer(self, imei: str, ts: dt.datetime) -> None:
        known = self._catch_up.get(imei)
        if known is None or ts < known:
            self._catch_up[imei] = ts

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued is evaluated (tests, shutdown)."""
        self._urgent = True
        try:
            async with asyncio.timeout(timeout_s):
                while not (self._idle.is_set() and not self._queue and not self._catch_up):
                    self._wake.set()
                    await asyncio.sleep(0.01)
            return True
        except TimeoutError:
            return False
        finally:
            self._urgent = False

    async def close(self, timeout_s: float = 10.0) -> None:
        if self._task is not None:
            if not await self.drain(timeout_s):
                log.warning("shutdown: %d points were not evaluated against the geofences (their devices are "
                            "caught up on the next start)", self._queued)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        try:
            await self._catch_up_at_start()
        except Exception as exc:
            log.warning("geofence catch-up at start failed: %s", type(exc).__name__)
        while True:
            if not self._queue and not self._catch_up:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: Sequence[LocationPoint] = ()
            try:
                if self._queue:
                    if self._queued < EVALUATE_POINTS and not self._urgent:
                        # let group commits gather: fewer, larger evaluations (and SQL commits) under load
                        await asyncio.sleep(max(0.0, self._last + EVALUATE_INTERVAL_S - time.monotonic()))
                    self._last = time.monotonic()
                    batch = self._take()
                    await self._evaluate_batch(batch)
                else:
                    imei, oldest = next(iter(self._catch_up.items()))
                    del self._catch_up[imei]
                    batch = [LocationPoint(imei, oldest, 0.0, 0.0)]  # what to read back if this fails
                    await self._read_and_evaluate(imei, oldest)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # a store failed: these devices are read back from the location store later
                self.metrics.store_errors.labels("geofences").inc()
                log.warning("geofence evaluation failed (%s); retrying from the stored points", type(exc).__name__)
                for p in batch:
                    self._defer(p.imei, p.ts)
                self._states.clear()
                await asyncio.sleep(1.0)

    def _take(self) -> list[LocationPoint]:
        """Every batch queued, up to :data:`EVALUATE_POINTS` points: under load, one evaluation (and one
        transaction) covers several group commits."""
        out: list[LocationPoint] = []
        while self._queue and (not out or len(out) + len(self._queue[0]) <= EVALUATE_POINTS):
            batch = self._queue.popleft()
            self._queued -= len(batch)
            out.extend(batch)
        return out

    async def _catch_up_at_start(self) -> None:
        """Devices whose stored points are newer than their newest evaluated one (the process stopped
        before evaluating them) are read back from the location store."""
        if not len(self.service.index):
            return
        evaluated = dict(await self.rows.evaluated())
        if not evaluated:
            return
        for p in await self.location_store.latest(list(evaluated)):
            if p.ts > evaluated[p.imei] and p.imei not in self._catch_up:
                self._catch_up[p.imei] = p.ts
        if self._catch_up:
            self._idle.clear()

    async def _read_and_evaluate(self, imei: str, oldest: dt.datetime) -> None:
        """Evaluate ``imei``'s stored points from its newest evaluated one (or from ``oldest``, the oldest
        one that was not queued, when it was never evaluated)."""
        state = await self._state(imei)
        after = state.last_ts if state.last_ts is not None else oldest - dt.timedelta(microseconds=1)
        while True:
            points = await self.location_store.track(imei, None, None, CATCH_UP_PAGE, after)
            if not points:
                return
            await self._evaluate_batch(points, catching_up=True)
            if len(points) < CATCH_UP_PAGE:
                return
            after = points[-1].ts

    async def _state(self, imei: str) -> DeviceState:
        state = self._states.get(imei)
        if state is None:
            state = (await self.rows.load_state([imei]))[imei]
            self._remember(imei, state)
        return state

    def _remember(self, imei: str, state: DeviceState) -> None:
        self._states[imei] = state
        self._states.move_to_end(imei)
        while len(self._states) > CACHED_DEVICES:
            self._states.popitem(last=False)

    async def _evaluate_batch(self, batch: Sequence[LocationPoint], catching_up: bool = False) -> None:
        index = self.service.index
        by_imei: dict[str, list[LocationPoint]] = {}
        for p in batch:
            if not catching_up and p.imei in self._catch_up:
                self._defer(p.imei, p.ts)  # read back with the rest of that device's points
                continue
            if index.concerns(p.imei):
                by_imei.setdefault(p.imei, []).append(p)
        if not by_imei:
            return
        missing = [imei for imei in by_imei if imei not in self._states]
        if missing:
            for imei, state in (await self.rows.load_state(missing)).items():
                self._remember(imei, state)
        todo = by_imei
        for _ in range(RETRIES + 1):
            states = {imei: self._states[imei] for imei in todo}
            # the geometry and the transitions in a worker thread: shapely, numpy and PROJ release the GIL,
            # and the event loop goes on reading sockets and acknowledging meanwhile
            updates = await asyncio.to_thread(compute, index, states, todo, utcnow())
            if not updates:
                return
            won = await self.rows.commit_evaluation(list(updates.values()))
            for imei in won:
                update = updates[imei]
                self._remember(imei, _after(self._states[imei], update))
                self._announce(update)
            lost = [imei for imei in updates if imei not in won]
            if not lost:
                return
            # another evaluation of these devices committed first: start again from the stored state
            for imei, state in (await self.rows.load_state(lost)).items():
                self._remember(imei, state)
            todo = {imei: todo[imei] for imei in lost}
        log.warning("geofence evaluation of %d devices kept losing to other evaluations; reading them back later",
                    len(todo))
        for imei, pts in todo.items():
            self._defer(imei, min(p.ts for p in pts))

    def _announce(self, update: DeviceUpdate) -> None:
        for event in update.events:
            self.metrics.geofence_transitions.labels(event["transition"]).inc()
            self.bus.publish("geofence", {"imei": update.imei, "geofence_event": event_json(event)})
