"""The trip and stop rules as pure logic (no server): the same answers whatever the page size, the lone
moving fix, an empty or a motionless track, speeds derived only where none was reported."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.server.test_trips import build
from truckx_server.domain.trips import GEOD, Detector, Enricher
from truckx_server.models import UTC, LocationPoint, parse_time

T0 = dt.datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def points_of(track_points: list[dict]) -> list[LocationPoint]:
    return [LocationPoint(imei="1", ts=parse_time(p["ts"]), lat=p["lat"], lon=p["lon"], speed_kmh=p.get("speed_kmh"),
                          heading=p.get("heading")) for p in track_points]


def run(points: list[LocationPoint], page: int, stop_min_s: float = 300, keep: bool = False) -> tuple[Detector, list]:
    detector, enricher, events = Detector(stop_min_s, keep_points=keep), Enricher(stop_min_s), []
    for i in range(0, len(points), page):
        detector.push(enricher.push(points[i:i + page]))
        events += detector.drain()
    detector.push(enricher.finish())
    detector.finish()
    return detector, events + detector.drain()


@pytest.mark.parametrize("page", [1, 2, 3, 7, 1000])
def test_page_size_does_not_change_the_answer(page: int) -> None:
    points = points_of(build(T0).points)
    reference, ref_events = run(points, 1000, keep=True)
    got, events = run(points, page, keep=True)
    assert [t.json() for t in got.trips] == [t.json() for t in reference.trips]
    assert [s.json() for s in got.stops] == [s.json() for s in reference.stops]
    assert len(reference.trips) == 3 and len(reference.stops) == 3
    assert [(k, v.ts if k == "point" else None) for k, v in events] == \
        [(k, v.ts if k == "point" else None) for k, v in ref_events]
    assert [k for k, _ in events].count("begin") == 3 == [k for k, _ in events].count("end")


def test_empty_and_motionless_tracks() -> None:
    det, events = run([], 10, keep=True)
    assert det.trips == [] and det.stops == [] and events == []
    parked = [LocationPoint("1", T0 + dt.timedelta(minutes=i), 50.0, 8.0, speed_kmh=0.0) for i in range(20)]
    det, events = run(parked, 4, keep=True)
    assert det.trips == [] and [(s.start.ts, s.end_ts) for s in det.stops] == [(T0, T0 + dt.timedelta(minutes=19))]
    det, _ = run(parked[:3], 4)  # two minutes still: no stop yet
    assert det.stops == []


def test_a_lone_moving_fix_first_is_part_of_the_stop() -> None:
    pts = [LocationPoint("1", T0, 50.0, 8.0, speed_kmh=9.0)] + [
        LocationPoint("1", T0 + dt.timedelta(minutes=i), 50.0, 8.0, speed_kmh=0.0) for i in range(1, 10)]
    det, _ = run(pts, 3)
    assert det.trips == [] and [(s.start.ts, s.end_ts) for s in det.stops] == [(T0, T0 + dt.timedelta(minutes=9))]


def test_reported_speed_wins_and_missing_speed_is_derived() -> None:
    # 100 m north every 10 s: 36 km/h; the second fix reports 0 (the device said so), the others nothing
    lat = 50.0
    pts = []
    for i in range(4):
        pts.append(LocationPoint("1", T0 + dt.timedelta(seconds=10 * i), lat, 8.0, speed_kmh=0.0 if i == 1 else None))
        lat = GEOD.fwd(8.0, lat, 0, 100)[1]
    enricher = Enricher(300)
    fixes = enricher.push(pts) + enricher.finish()
    assert [round(f.speed_kmh, 6) for f in fixes] == [36.0, 0.0, 36.0, 36.0]  # the first from the step after it
    assert all(f.course is not None and min(f.course, 360 - f.course) < 1e-6 for f in fixes)  # due north
    assert [round(f.step_m, 6) for f in fixes] == [0.0, 100.0, 100.0, 100.0]
