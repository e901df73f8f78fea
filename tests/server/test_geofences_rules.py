"""Unit tests of the geofence rules (``domain/geofences.py``): the transitions of one device's points from
a stored state, and the compiled fences (the STRtree path and the direct one agree with shapely and a
geodesic distance computed independently, with geographiclib)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import shapely
from geographiclib.geodesic import Geodesic

from truckx_server.domain import geofences as g
from truckx_server.domain.geofences import DeviceState, FenceIndex, compile_fence, evaluate, parse_geometry
from truckx_server.errors import InvalidArgument
from truckx_server.models import UTC, LocationPoint

IMEI = "490154203237518"
T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
NOW = T0 + dt.timedelta(days=1)


def pt(seconds: float) -> LocationPoint:
    return LocationPoint(IMEI, T0 + dt.timedelta(seconds=seconds), 1.0, 2.0)


def run(state: DeviceState, seq: list[tuple[float, set[str]]], applicable: set[str] = frozenset({"a", "b"})):  # type: ignore[assignment]
    points = [pt(s) for s, _ in seq]
    return evaluate(IMEI, state, points, [inside for _, inside in seq], set(applicable), NOW)


def events(update) -> list[tuple[str, str, float]]:
    return [(e["geofence_id"], e["transition"], (e["ts"] - T0).total_seconds()) for e in update.events]


def test_transitions_in_ts_order_whatever_the_order_given() -> None:
    seq = [(4, set()), (1, set()), (3, {"a"}), (2, {"a", "b"}), (5, {"b"})]
    update = run(DeviceState(), seq)
    assert events(update) == [("a", "enter", 2), ("b", "enter", 2), ("b", "exit", 3), ("a", "exit", 4),
                              ("b", "enter", 5)]
    assert update.last_ts == T0 + dt.timedelta(seconds=5)
    assert update.enters == [("b", T0 + dt.timedelta(seconds=5))] and update.exits == []
    assert update.expected_version is None


def test_old_resent_and_repeated_points_are_not_evaluated() -> None:
    state = DeviceState(T0 + dt.timedelta(seconds=10), 7, {"a": T0})
    assert run(state, [(10, set()), (9, set()), (1, {"b"})]) is None
    # a point repeated in the batch counts once (the first one given: the one the store kept)
    update = run(state, [(11, set()), (11, {"a"}), (12, set())])
    assert events(update) == [("a", "exit", 11)]
    assert update.exits == ["a"] and update.enters == [] and update.expected_version == 7


def test_leaving_and_coming_back_within_a_batch_renews_since() -> None:
    state = DeviceState(T0, 3, {"a": T0})
    update = run(state, [(1, set()), (2, {"a"})])
    assert events(update) == [("a", "exit", 1), ("a", "enter", 2)]
    assert update.exits == ["a"] and update.enters == [("a", T0 + dt.timedelta(seconds=2))]
    # in and out again: nothing to store but the two transitions
    update = run(DeviceState(T0, 3), [(1, {"b"}), (2, set())])
    assert events(update) == [("b", "enter", 1), ("b", "exit", 2)] and update.enters == [] and update.exits == []


def test_fences_gone_or_no_longer_applying_are_dropped_without_an_exit() -> None:
    state = DeviceState(T0, 1, {"a": T0, "gone": T0})
    update = run(state, [(1, {"a"})], applicable={"a"})
    assert events(update) == [] and update.exits == ["gone"]


def test_geometry_is_normalised() -> None:
    assert parse_geometry({"type": "Circle", "center": [13, 52.5, 30], "radius_m": 10}) == {
        "type": "Circle", "center": [13.0, 52.5], "radius_m": 10.0}
    poly = parse_geometry({"type": "Polygon", "coordinates": [[[0, 0, 5], [1, 0], [1, 1], [0, 0]]], "bbox": [0, 0, 1, 1]})
    assert poly == {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]}
    with pytest.raises(InvalidArgument):
        parse_geometry({"type": "Circle", "center": [13, 52], "radius_m": float("nan")})


def geodesic_inside(fence: dict, lon: float, lat: float) -> bool:
    """Independently of the code under test: shapely's covers, or geographiclib's WGS84 distance."""
    geom = fence["geometry"]
    if geom["type"] == "Circle":
        c = geom["center"]
        if abs(lat - c[1]) > 1 or abs(lon - c[0]) > 2:  # at most 80 km: far from any of these circles
            return False
        return Geodesic.WGS84.Inverse(c[1], c[0], lat, lon)["s12"] <= geom["radius_m"]
    if "shape" not in fence:
        fence["shape"] = shapely.geometry.shape(geom)
    return fence["shape"].covers(shapely.Point(lon, lat))


def random_fences(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        lon, lat = rng.uniform(-10, 10), rng.uniform(40, 60)
        if i % 2:
            geometry = {"type": "Circle", "center": [lon, lat], "radius_m": rng.uniform(1_000, 80_000)}
        else:
            w, h = rng.uniform(0.05, 1), rng.uniform(0.05, 1)
            geometry = {"type": "Polygon", "coordinates": [[[lon, lat], [lon + w, lat], [lon + w / 2, lat + h],
                                                            [lon, lat]]]}
        out.append({"id": f"f{i}", "name": f"f{i}", "geometry": parse_geometry(geometry),
                    "imeis": None if i % 3 else [IMEI]})
    return out


@pytest.mark.parametrize("n", [5, g.STRTREE_FROM, 300])
def test_index_agrees_with_an_independent_check(n: int) -> None:
    rng = random.Random(n)
    fences = random_fences(rng, n)
    index = FenceIndex([compile_fence(f) for f in fences])
    assert (index._tree is None) == (n < g.STRTREE_FROM)
    other = "356938035643809"
    pts = [(rng.uniform(-10, 11), rng.uniform(40, 61)) for _ in range(1500)]
    # and points right at the fences: circle rims just inside and outside, polygon corners
    for f in fences:
        geom = f["geometry"]
        if geom["type"] == "Circle":
            c, r = geom["center"], geom["radius_m"]
            for d in (r - 0.5, r + 0.5):
                line = Geodesic.WGS84.Direct(c[1], c[0], rng.uniform(0, 360), d)
                pts.append((line["lon2"], line["lat2"]))
        else:
            pts.append(tuple(geom["coordinates"][0][1]))  # a vertex: on the boundary, so inside
    imeis = [IMEI if k % 2 else other for k in range(len(pts))]
    got = index.containing(imeis, [p[0] for p in pts], [p[1] for p in pts])
    hits = 0
    for k, (lon, lat) in enumerate(pts):
        want = {f["id"] for f in fences if (f["imeis"] is None or imeis[k] in f["imeis"])
                and geodesic_inside(f, lon, lat)}
        assert got[k] == want, (lon, lat)
        hits += bool(want)
    assert hits >= n  # the check is not vacuous


def test_circles_across_the_antimeridian_and_around_a_pole() -> None:
    fences = [{"id": "dateline", "name": "d", "imeis": None,
               "geometry": parse_geometry({"type": "Circle", "center": [179.99, 0], "radius_m": 5_000})},
              {"id": "pole", "name": "p", "imeis": None,
               "geometry": parse_geometry({"type": "Circle", "center": [0, 89.99], "radius_m": 20_000})}]
    index = FenceIndex([compile_fence(f) for f in fences])
    got = index.containing([IMEI] * 4, [-179.99, 179.9, 135.0, 0.0], [0.0, 0.0, 89.95, 89.5])
    assert got == [{"dateline"}, set(), {"pole"}, set()]
