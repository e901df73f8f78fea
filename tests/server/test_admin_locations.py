"""Admin locations: a device's track (json paged, geojson of one kind, gpx, csv; ascending time;
since/until) and the latest position of every device. (Trip splitting of gpx and kml: test_trips.py.)"""

from __future__ import annotations

import csv
import datetime as dt
import io
import xml.etree.ElementTree as ET
from typing import Any

from tests.support import Device, RunningServer, new_imei
from tests.server.support import make_user
from truckx_server.models import format_time

BASE = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
GPX = "{http://www.topografix.com/GPX/1/1}"


async def drive(server: RunningServer, dev: Device, n: int, lat0: float = 50.0) -> list[dict[str, Any]]:
    """Send ``n`` fixes a second apart (in one batch message, out of order) and wait for the ack."""
    points = [{"ts": format_time(BASE + dt.timedelta(seconds=i)), "lat": lat0 + i * 0.001, "lon": 8.0 + i * 0.001,
               "speed_kmh": 50.0 + i, **({"alt_m": 100.5} if i % 2 else {})} for i in range(n)]
    ws = await server.connect(dev)
    await ws.send({"type": "locations", "seq": 1, "points": list(reversed(points))})
    await ws.wait_ack(1)
    ws.close()
    return points


async def test_track_json_pages_in_ascending_time(api: RunningServer) -> None:
    headers = await api.admin_headers()
    dev = await api.register()
    points = await drive(api, dev, 25)
    got: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params=params, headers=headers)
        assert r.status_code == 200
        got += r.json()["items"]
        cursor = r.json()["next_cursor"]
        assert r.headers.get("X-Next-Cursor") == cursor
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert [g["ts"] for g in got] == [p["ts"] for p in points]
    assert got[3] == {"imei": dev.imei, **points[3]}

    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", headers=headers,
                           params={"since": format_time(BASE + dt.timedelta(seconds=5)),
                                   "until": format_time(BASE + dt.timedelta(seconds=8))})
    assert [g["ts"] for g in r.json()["items"]] == [p["ts"] for p in points[5:8]]


async def test_track_geojson_gpx_csv(api: RunningServer) -> None:
    headers = await api.admin_headers()
    dev = await api.register()
    points = await drive(api, dev, 6)
    url = f"/api/v1/admin/devices/{dev.imei}/locations"

    r = await api.http.get(url, params={"format": "geojson", "limit": 4}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["next_cursor"]
    # one kind of feature: by default the track's LineString, with a time per position
    assert [f["geometry"]["type"] for f in fc["features"]] == ["LineString"]
    line = fc["features"][0]
    assert [c[:2] for c in line["geometry"]["coordinates"]] == [[p["lon"], p["lat"]] for p in points[:4]]
    assert line["properties"]["times"] == [p["ts"] for p in points[:4]]
    r = await api.http.get(url, params={"format": "geojson", "limit": 4, "geojson_kind": "points"}, headers=headers)
    fixes = r.json()["features"]
    assert {f["geometry"]["type"] for f in fixes} == {"Point"}
    assert [f["properties"]["ts"] for f in fixes] == [p["ts"] for p in points[:4]]
    assert fixes[1]["geometry"]["coordinates"] == [points[1]["lon"], points[1]["lat"], 100.5]
    r = await api.http.get(url, params={"format": "geojson", "cursor": fc["next_cursor"], "geojson_kind": "points"},
                           headers=headers)
    assert [f["properties"]["ts"] for f in r.json()["features"]] == [p["ts"] for p in points[4:]]
    assert r.json()["next_cursor"] is None

    r = await api.http.get(url, params={"format": "gpx"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/gpx+xml")
    root = ET.fromstring(r.content)
    assert root.tag == f"{GPX}gpx" and root.get("version") == "1.1"
    trkpts = root.findall(f"{GPX}trk/{GPX}trkseg/{GPX}trkpt")
    assert [(float(t.get("lat")), float(t.get("lon"))) for t in trkpts] == [(p["lat"], p["lon"]) for p in points]
    assert [t.findtext(f"{GPX}time") for t in trkpts] == [p["ts"] for p in points]
    assert trkpts[1].findtext(f"{GPX}ele") == "100.5" and trkpts[0].find(f"{GPX}ele") is None

    r = await api.http.get(url, params={"format": "csv", "limit": 5}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["X-Next-Cursor"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.text.splitlines()[0] == "imei,ts,lat,lon,speed_kmh,heading,alt_m,accuracy_m"
    assert [row["ts"] for row in rows] == [p["ts"] for p in points[:5]]
    assert rows[1]["alt_m"] == "100.5" and rows[0]["alt_m"] == "" and float(rows[2]["speed_kmh"]) == 52.0

    r = await api.http.get(url, params={"format": "kmz"}, headers=headers)
    assert r.status_code == 400 and "format" in r.json()["error"]["message"]


async def test_track_of_an_empty_or_unknown_device(api: RunningServer) -> None:
    headers = await api.admin_headers()
    dev = await api.register(login=False)
    for fmt in ("json", "geojson", "gpx", "kml", "csv"):
        r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params={"format": fmt}, headers=headers)
        assert r.status_code == 200, fmt
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params={"format": "gpx"}, headers=headers)
    assert ET.fromstring(r.content).findall(f".//{GPX}trkpt") == []
    r = await api.http.get(f"/api/v1/admin/devices/{new_imei()}/locations", headers=headers)
    assert r.status_code == 404
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params={"since": "now"}, headers=headers)
    assert r.status_code == 400


async def test_latest_for_all_and_some_devices(api: RunningServer) -> None:
    viewer = await make_user(api, "vy", "viewer")
    a, b, quiet = await api.register(), await api.register(), await api.register(login=False)
    await drive(api, a, 3, lat0=10.0)
    await drive(api, b, 5, lat0=20.0)
    r = await api.http.get("/api/v1/admin/locations/latest", headers=viewer)
    assert r.status_code == 200
    latest = {p["imei"]: p for p in r.json()["items"]}
    assert set(latest) == {a.imei, b.imei}
    assert latest[a.imei]["ts"] == format_time(BASE + dt.timedelta(seconds=2))
    assert latest[b.imei]["lat"] == 20.004
    r = await api.http.get("/api/v1/admin/locations/latest", params={"imei": [b.imei, quiet.imei]}, headers=viewer)
    assert [p["imei"] for p in r.json()["items"]] == [b.imei]
    r = await api.http.get("/api/v1/admin/locations/latest", params={"imei": "42"}, headers=viewer)
    assert r.status_code == 400
