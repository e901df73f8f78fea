"""Trips and stops against a hand-built track with known answers (positions laid out and distances
checked with GeographicLib, independently of the server's pyproj), and the exports split into trips:
GPX parsed by gpxpy and checked element by element, KML parsed with lxml, GeoJSON of one kind."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import gpxpy
import pytest
from geographiclib.geodesic import Geodesic
from lxml import etree

from tests.server.support import report_alarm
from tests.support import Device, RunningServer
from truckx_server.models import format_time, utcnow

WGS84 = Geodesic.WGS84
P0 = (48.137, 11.575)  # lat, lon
GPX = "{http://www.topografix.com/GPX/1/1}"
TPX = "{http://www.garmin.com/xmlschemas/TrackPointExtension/v2}"
KML = "{http://www.opengis.net/kml/2.2}"


def step(lat: float, lon: float, azimuth: float, metres: float) -> tuple[float, float]:
    g = WGS84.Direct(lat, lon, azimuth, metres)
    return g["lat2"], g["lon2"]


def geodesic_m(points: list[dict[str, Any]]) -> float:
    return sum(WGS84.Inverse(a["lat"], a["lon"], b["lat"], b["lon"])["s12"] for a, b in zip(points, points[1:]))


@dataclass
class Track:
    t0: dt.datetime
    points: list[dict[str, Any]] = field(default_factory=list)

    def at(self, seconds: float) -> dt.datetime:
        return self.t0 + dt.timedelta(seconds=seconds)

    def add(self, seconds: float, lat: float, lon: float, speed: float | None = None, **extra: Any) -> None:
        point = {"ts": format_time(self.at(seconds)), "lat": lat, "lon": lon, **extra}
        if speed is not None:
            point["speed_kmh"] = speed
        self.points.append(point)

    def between(self, start_s: float, end_s: float) -> list[dict[str, Any]]:
        lo, hi = format_time(self.at(start_s)), format_time(self.at(end_s))
        return [p for p in self.points if lo <= p["ts"] <= hi]


def build(t0: dt.datetime) -> Track:
    """S0: parked 0-360 s. Trip A 390-960 s: east at 250 m / 30 s, some fixes without speed, a 90 s halt
    inside, one fix at 80 km/h. Stop B from 1020 s with a lone 12 km/h fix at 1500 s (drift: no trip),
    until trip C at 1930 s: north-east at 200 m / 10 s, no speeds reported (72 km/h derived), to 2120 s.
    A 20 min gap. Trip D 3320-3500 s: south at 50 km/h, heading 180."""
    t = Track(t0)
    lat, lon = P0
    for s in range(0, 361, 60):
        t.add(s, lat, lon, 0.0)
    for i, s in enumerate(range(390, 631, 30)):
        if i:
            lat, lon = step(lat, lon, 90, 250)
        t.add(s, lat, lon, None if i in (2, 5) else 30.0)
    for s in (660, 690, 720):
        t.add(s, lat, lon, 0.0)
    for i, s in enumerate(range(750, 961, 30)):
        lat, lon = step(lat, lon, 90, 250)
        t.add(s, lat, lon, 80.0 if i == 3 else 30.0)
    for s in list(range(1020, 1441, 60)):
        t.add(s, lat, lon, 0.0)
    t.add(1500, lat, lon, 12.0)
    for s in range(1560, 1921, 60):
        t.add(s, lat, lon, 0.0)
    for s in range(1930, 2121, 10):
        lat, lon = step(lat, lon, 45, 200)
        t.add(s, lat, lon)
    for s in range(3320, 3501, 20):
        t.add(s, lat, lon, 50.0, heading=180.0)
        lat, lon = step(lat, lon, 180, 50 / 3.6 * 20)
    return t


@pytest.fixture
async def trip_setup(api: RunningServer) -> tuple[RunningServer, Device, Track, list[dict[str, Any]]]:
    dev = await api.register()
    track = build(utcnow().replace(microsecond=0) - dt.timedelta(hours=2))
    ws = await api.connect(dev)
    await ws.send({"type": "locations", "seq": 1, "points": track.points})
    await ws.wait_ack(1)
    alarms = [await report_alarm(api, dev, ts=format_time(track.at(s))) for s in (500, 1200, 3400, 3500)]
    return api, dev, track, alarms


def window(track: Track) -> dict[str, str]:
    return {"since": format_time(track.at(-60)), "until": format_time(track.at(3600))}


async def test_trips_and_stops_of_a_hand_built_track(trip_setup: Any) -> None:
    api, dev, track, alarms = trip_setup
    admin = await api.admin_headers()
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/trips", params=window(track), headers=admin)
    assert r.status_code == 200, r.text
    trips = r.json()["items"]
    assert [(t["start"], t["end"]) for t in trips] == [
        (format_time(track.at(390)), format_time(track.at(960))),
        (format_time(track.at(1930)), format_time(track.at(2120))),
        (format_time(track.at(3320)), format_time(track.at(3500)))]
    spans = [(390, 960), (1930, 2120), (3320, 3500)]
    for trip, (a, b) in zip(trips, spans):
        fixes = track.between(a, b)
        expected_km = geodesic_m(fixes) / 1000
        assert trip["distance_km"] == pytest.approx(expected_km, abs=1e-5)
        assert trip["duration_s"] == b - a
        assert trip["avg_speed_kmh"] == pytest.approx(expected_km / ((b - a) / 3600), rel=1e-4)
        assert trip["start_location"] == {"lat": fixes[0]["lat"], "lon": fixes[0]["lon"]}
        assert trip["end_location"] == {"lat": fixes[-1]["lat"], "lon": fixes[-1]["lon"]}
    # known answers: A is 16 steps of 250 m, C 19 steps of 200 m (its first fix's step is the stop's)
    assert trips[0]["distance_km"] == pytest.approx(4.0, abs=1e-6)
    assert trips[1]["distance_km"] == pytest.approx(3.8, abs=1e-6)
    assert trips[0]["max_speed_kmh"] == 80.0
    assert trips[1]["max_speed_kmh"] == pytest.approx(72.0, abs=1e-6)  # 200 m / 10 s, derived
    assert trips[2]["max_speed_kmh"] == 50.0
    # inside a trip, both ends included; the alarm during stop B is in none
    assert [t["alarms"] for t in trips] == [[alarms[0]["id"]], [], [alarms[2]["id"], alarms[3]["id"]]]

    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/stops", params=window(track), headers=admin)
    assert r.status_code == 200, r.text
    stops = r.json()["items"]
    last_c = track.between(2120, 2120)[0]
    assert stops == [
        {"start": format_time(track.at(0)), "end": format_time(track.at(390)), "duration_s": 390,
         "location": {"lat": P0[0], "lon": P0[1]}},
        {"start": format_time(track.at(1020)), "end": format_time(track.at(1930)), "duration_s": 910,
         "location": {"lat": track.between(1020, 1020)[0]["lat"], "lon": track.between(1020, 1020)[0]["lon"]}},
        {"start": format_time(track.at(2120)), "end": format_time(track.at(3320)), "duration_s": 1200,
         "location": {"lat": last_c["lat"], "lon": last_c["lon"]}},
    ]


async def test_a_longer_stop_minimum_joins_trips(server_factory: Any) -> None:
    srv = await server_factory(stop_min_s=1000)
    dev = await srv.register()
    track = build(utcnow().replace(microsecond=0) - dt.timedelta(hours=2))
    ws = await srv.connect(dev)
    await ws.send({"type": "locations", "seq": 1, "points": track.points})
    await ws.wait_ack(1)
    r = await srv.http.get(f"/api/v1/admin/devices/{dev.imei}/trips", params=window(track),
                           headers=await srv.admin_headers())
    trips = r.json()["items"]
    # B (910 s) is a halt now: A, the blip and C are one trip; the 1200 s gap still splits
    assert [(t["start"], t["end"]) for t in trips] == [
        (format_time(track.at(390)), format_time(track.at(2120))),
        (format_time(track.at(3320)), format_time(track.at(3500)))]
    assert trips[0]["distance_km"] == pytest.approx(geodesic_m(track.between(390, 2120)) / 1000, abs=1e-5)


async def test_the_window_is_checked(trip_setup: Any) -> None:
    api, dev, track, _alarms = trip_setup
    admin = await api.admin_headers()
    url = f"/api/v1/admin/devices/{dev.imei}/trips"
    r = await api.http.get(url, params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-02T00:00:00Z"},
                           headers=admin)
    assert r.status_code == 400 and "31 days" in r.json()["error"]["message"]
    r = await api.http.get(url, params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                           headers=admin)
    assert r.status_code == 400
    r = await api.http.get(url, params={"since": "yesterday"}, headers=admin)
    assert r.status_code == 400
    r = await api.http.get("/api/v1/admin/devices/490154203237518/stops", headers=admin)
    assert r.status_code == 404
    r = await api.http.get("/api/v1/admin/devices/12345/stops", headers=admin)
    assert r.status_code == 400
    # no window: the last day, which holds the whole track
    r = await api.http.get(url, headers=admin)
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    r = await api.http.get(url, headers={})
    assert r.status_code == 401


async def test_gpx_has_a_segment_per_trip_with_speed_and_course(trip_setup: Any) -> None:
    api, dev, track, _alarms = trip_setup
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations",
                           params={**window(track), "format": "gpx", "limit": 5}, headers=await api.admin_headers())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/gpx+xml") and "X-Next-Cursor" not in r.headers
    gpx = gpxpy.parse(r.text)
    assert gpx.version == "1.1" and len(gpx.tracks) == 1
    segments = gpx.tracks[0].segments
    spans = [(390, 960), (1930, 2120), (3320, 3500)]
    assert len(segments) == 3
    for segment, (a, b) in zip(segments, spans):
        fixes = track.between(a, b)
        assert [p.time.astimezone(dt.timezone.utc) for p in segment.points] == [track.at(s) for s in
                                                                               _seconds(track, fixes)]
        assert [(p.latitude, p.longitude) for p in segment.points] == [
            (pytest.approx(f["lat"], abs=1e-7), pytest.approx(f["lon"], abs=1e-7)) for f in fixes]
        assert segment.length_2d() == pytest.approx(geodesic_m(fixes), rel=0.01)  # gpxpy's own distance
    # the extension: speed in m/s and course in degrees, reported or derived
    root = etree.fromstring(r.content)
    segs = root.findall(f"{GPX}trk/{GPX}trkseg")
    c_ext = [pt.find(f"{GPX}extensions/{TPX}TrackPointExtension") for pt in segs[1].findall(f"{GPX}trkpt")]
    assert [child.tag for child in c_ext[0]] == [f"{TPX}speed", f"{TPX}course"]  # the schema's order
    assert all(float(e.find(f"{TPX}speed").text) == pytest.approx(20.0, abs=1e-3) for e in c_ext)
    assert all(float(e.find(f"{TPX}course").text) == pytest.approx(45.0, abs=0.05) for e in c_ext)
    d_ext = [pt.find(f"{GPX}extensions/{TPX}TrackPointExtension") for pt in segs[2].findall(f"{GPX}trkpt")]
    assert {(e.find(f"{TPX}speed").text, e.find(f"{TPX}course").text) for e in d_ext} == {("13.889", "180")}
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations",
                           params={"format": "gpx", "cursor": "abc"}, headers=await api.admin_headers())
    assert r.status_code == 400


def _seconds(track: Track, fixes: list[dict[str, Any]]) -> list[float]:
    return [(dt.datetime.fromisoformat(f["ts"].replace("Z", "+00:00")) - track.t0).total_seconds() for f in fixes]


async def test_kml_has_a_line_per_trip_and_a_point_per_stop(trip_setup: Any) -> None:
    api, dev, track, _alarms = trip_setup
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params={**window(track), "format": "kml"},
                           headers=await api.admin_headers())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.google-earth.kml+xml"
    assert r.headers["content-disposition"] == f'attachment; filename="{dev.imei}.kml"'
    root = etree.fromstring(r.content)
    assert root.tag == f"{KML}kml"
    marks = root.findall(f"{KML}Document/{KML}Placemark")
    lines = [m for m in marks if m.find(f"{KML}LineString") is not None]
    points = [m for m in marks if m.find(f"{KML}Point") is not None]
    assert len(lines) == 3 and len(points) == 3
    for mark, (a, b) in zip(lines, [(390, 960), (1930, 2120), (3320, 3500)]):
        coords = mark.find(f"{KML}LineString/{KML}coordinates").text.split()
        fixes = track.between(a, b)
        assert [tuple(float(x) for x in c.split(",")) for c in coords] == [
            (pytest.approx(f["lon"], abs=1e-7), pytest.approx(f["lat"], abs=1e-7)) for f in fixes]
        assert mark.find(f"{KML}TimeSpan/{KML}begin").text == format_time(track.at(a))
        assert mark.find(f"{KML}TimeSpan/{KML}end").text == format_time(track.at(b))
    assert points[0].find(f"{KML}Point/{KML}coordinates").text == f"{P0[1]},{P0[0]}"


async def test_geojson_is_one_kind_of_feature(trip_setup: Any) -> None:
    api, dev, track, _alarms = trip_setup
    url = f"/api/v1/admin/devices/{dev.imei}/locations"
    admin = await api.admin_headers()
    r = await api.http.get(url, params={**window(track), "format": "geojson", "limit": 1000}, headers=admin)
    body = r.json()
    assert [f["geometry"]["type"] for f in body["features"]] == ["LineString"]
    line = body["features"][0]
    assert line["properties"]["times"] == [p["ts"] for p in track.points]
    assert line["geometry"]["coordinates"] == [[p["lon"], p["lat"]] for p in track.points]
    assert line["properties"]["speeds_kmh"] == [p.get("speed_kmh") for p in track.points]
    r = await api.http.get(url, params={**window(track), "format": "geojson", "geojson_kind": "points"},
                           headers=admin)
    features = r.json()["features"]
    assert {f["geometry"]["type"] for f in features} == {"Point"} and len(features) == len(track.points)
    assert features[0]["properties"]["ts"] == track.points[0]["ts"]
    r = await api.http.get(url, params={"format": "geojson", "geojson_kind": "polygons"}, headers=admin)
    assert r.status_code == 400
