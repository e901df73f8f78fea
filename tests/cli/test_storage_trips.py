"""truckx locations trips / stops (a drive, a stop, a drive), the KML export, truckx storage and truckx
videos delete (evidence refused without --force), through CliRunner against a real server."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cli.support import Device, Env

UTC = dt.timezone.utc
KML = "{http://www.opengis.net/kml/2.2}"


def rfc(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Day:
    dev: Device
    t0: dt.datetime
    alarm: dict[str, Any]


@pytest.fixture(scope="module")
def day(env: Env) -> Day:
    """Driving north 10 min (1 km a minute), parked 10 min, driving again 10 min; an alarm while driving."""
    dev = env.register("driver")
    t0 = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    points = []
    lat = 50.0
    for minute in range(31):
        moving = minute <= 10 or minute >= 20
        if moving and minute:
            lat += 0.009
        points.append({"ts": rfc(t0 + dt.timedelta(minutes=minute)), "lat": lat, "lon": 8.0,
                       "speed_kmh": 60.0 if moving else 0.0})
    with env.connect(dev) as conn:
        conn.wait_ack(conn.send_points(points))
    alarm = env.post_alarm(dev, type="OVERSPEED", ts=rfc(t0 + dt.timedelta(minutes=25)), lat=lat, lon=8.0)
    return Day(dev, t0, alarm)


def test_trips_and_stops(env: Env, day: Day) -> None:
    trips = env.json("locations", "trips", day.dev.imei, "--since", "1d")
    assert [(t["start"], t["end"]) for t in trips] == [
        (rfc(day.t0), rfc(day.t0 + dt.timedelta(minutes=10))),
        (rfc(day.t0 + dt.timedelta(minutes=20)), rfc(day.t0 + dt.timedelta(minutes=30)))]
    assert [t["alarms"] for t in trips] == [[], [day.alarm["id"]]]
    assert all(t["distance_km"] == pytest.approx(10.0, rel=0.01) for t in trips)
    table = env.ok("locations", "trips", day.dev.imei, "--tz", "UTC")
    assert (day.t0.strftime("%Y-%m-%d %H:%M:%S") in table.stdout and "2 trips" in table.stderr)
    rows = list(csv.DictReader(io.StringIO(env.ok("locations", "trips", day.dev.imei, "--csv").stdout)))
    assert [r["start_lat"] for r in rows] == ["50.0", str(trips[1]["start_location"]["lat"])]

    stops = env.json("locations", "stops", day.dev.imei, "--since", "3h", "--until", "now")
    assert stops == [{"start": rfc(day.t0 + dt.timedelta(minutes=11)), "end": rfc(day.t0 + dt.timedelta(minutes=20)),
                      "duration_s": 540, "location": stops[0]["location"]}]
    # a window the server refuses, an unregistered device, a bad IMEI
    result = env.run("locations", "trips", day.dev.imei, "--since", "40d")
    assert result.exit_code == 2 and "31 days" in result.stderr
    assert env.run("locations", "stops", "490154203237518").exit_code == 4
    assert env.run("locations", "stops", "12345").exit_code == 2


def test_kml_export(env: Env, day: Day) -> None:
    out = env.tmp / "day.kml"
    env.ok("locations", "track", day.dev.imei, "--since", "1d", "-o", str(out))
    root = ET.parse(out).getroot()
    marks = root.findall(f"{KML}Document/{KML}Placemark")
    assert sum(m.find(f"{KML}LineString") is not None for m in marks) == 2
    assert sum(m.find(f"{KML}Point") is not None for m in marks) == 1


def test_storage_and_video_delete(env: Env, day: Day) -> None:
    env.upload(day.dev, "clip-1.mp4", b"x" * 1000)
    env.upload(day.dev, "clip-2.mp4", b"y" * 500)
    held = env.post_alarm(day.dev, type="CRASH", ts=rfc(day.t0), lat=50.0, lon=8.0, files=["clip-1.mp4"])
    before = env.json("storage")
    assert before["videos"]["count"] >= 2 and before["videos"]["evidence"] >= 1 and before["last_pass"] is None
    table = env.ok("storage")
    assert "locations" in table.stdout and "videos" in table.stdout and "forever" in table.stdout
    assert "no retention pass has run yet" in table.stderr

    refused = env.run("videos", "delete", day.dev.imei, "clip-1.mp4", "--yes")
    assert refused.exit_code == 1 and "evidence" in refused.stderr and held["id"] in refused.stderr
    declined = env.run("videos", "delete", day.dev.imei, "clip-2.mp4", input="n\n")
    assert declined.exit_code == 1 and "not confirmed" in declined.stderr
    env.ok("videos", "delete", day.dev.imei, "clip-2.mp4", input="y\n")
    env.ok("videos", "delete", day.dev.imei, "clip-1.mp4", "--force", "--yes")
    assert [v["name"] for v in env.json("videos", "list", day.dev.imei)] == []
    assert env.run("videos", "delete", day.dev.imei, "clip-2.mp4", "--yes").exit_code == 4
    assert env.run("videos", "delete", day.dev.imei, "../x", "--yes").exit_code == 2
    after = env.json("storage")
    assert after["videos"]["count"] == before["videos"]["count"] - 2
    assert after["videos"]["bytes"] == before["videos"]["bytes"] - 1500
    json.dumps(after)
