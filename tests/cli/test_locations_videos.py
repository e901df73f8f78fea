"""truckx locations (latest, track exports: GPX parses as GPX, GeoJSON, CSV, multi-page merges) and
truckx videos (list, download: bytes and SHA-256 match the upload, a resumed download fetches only the
rest with Range)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.cli.support import Device, Env

UTC = dt.timezone.utc
GPX = "{http://www.topografix.com/GPX/1/1}"


def rfc(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Track:
    dev: Device
    points: list[dict[str, Any]]


@pytest.fixture(scope="module")
def track(env: Env) -> Track:
    dev = env.register("tracker")
    start = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=3)
    points = [{"ts": rfc(start + dt.timedelta(minutes=i)), "lat": 48.1 + i * 0.001, "lon": 11.5 + i * 0.002,
               "speed_kmh": 40.0 + i % 20, "alt_m": 500.0 + i} for i in range(25)]
    with env.connect(dev) as conn:
        conn.wait_ack(conn.send_points(points[:10]))
        conn.wait_ack(conn.send_points(points[10:]))
    return Track(dev, points)


def test_latest(env: Env, track: Track) -> None:
    items = env.json("locations", "latest", "--imei", track.dev.imei)
    assert len(items) == 1
    last = items[0].get("location", items[0])
    assert last["ts"] == track.points[-1]["ts"] and last["lat"] == pytest.approx(track.points[-1]["lat"])
    table = env.ok("locations", "latest", "--imei", track.dev.imei).stdout
    assert track.dev.imei in table


def test_track_json_and_relative_since(env: Env, track: Track) -> None:
    got = json.loads(env.ok("locations", "track", track.dev.imei, "-f", "json", "--limit", "7").stdout)
    assert [p["ts"] for p in got] == [p["ts"] for p in track.points]
    # the last 25 points span 3h-2h36m ago: --since 2h40m-ish keeps only the newest ones
    recent = json.loads(env.ok("locations", "track", track.dev.imei, "-f", "json", "--since", "160m").stdout)
    cutoff = dt.datetime.now(UTC) - dt.timedelta(minutes=160)
    assert [p["ts"] for p in recent] == [p["ts"] for p in track.points
                                         if dt.datetime.fromisoformat(p["ts"].replace("Z", "+00:00")) >= cutoff]
    assert 0 < len(recent) < len(track.points)


@pytest.mark.parametrize("limit", ["1000", "7"])  # one page as sent, and four pages merged
def test_gpx_export_parses_as_gpx(env: Env, track: Track, limit: str) -> None:
    out = env.tmp / f"track-{limit}.gpx"
    result = env.ok("locations", "track", track.dev.imei, "--since", "1d", "--until", "now", "--format", "gpx",
                    "-o", str(out), "--limit", limit)
    assert result.stdout == ""
    root = ET.parse(out).getroot()
    assert root.tag == f"{GPX}gpx" and root.get("version") == "1.1"
    pts = root.findall(f"{GPX}trk/{GPX}trkseg/{GPX}trkpt")
    assert [(float(p.get("lat")), float(p.get("lon"))) for p in pts] == \
        [(pytest.approx(p["lat"]), pytest.approx(p["lon"])) for p in track.points]
    assert [p.find(f"{GPX}time").text for p in pts] == [p["ts"] for p in track.points]
    assert not list(out.parent.glob(out.name + ".tmp"))


@pytest.mark.parametrize("limit", ["1000", "6"])
def test_geojson_and_csv_exports(env: Env, track: Track, limit: str) -> None:
    gj = env.tmp / f"t-{limit}.geojson"
    env.ok("locations", "track", track.dev.imei, "-o", str(gj), "--limit", limit)  # format from the suffix
    doc = json.loads(gj.read_text())
    assert doc["type"] == "FeatureCollection"
    assert [f["geometry"]["type"] for f in doc["features"]] == ["LineString"]  # one kind: the line
    line = doc["features"][0]
    assert [c[:2] for c in line["geometry"]["coordinates"]] == \
        [[pytest.approx(p["lon"]), pytest.approx(p["lat"])] for p in track.points]
    assert line["properties"]["times"] == [p["ts"] for p in track.points]
    pts = env.tmp / f"p-{limit}.geojson"
    env.ok("locations", "track", track.dev.imei, "-o", str(pts), "--limit", limit, "--geojson-kind", "points")
    fixes = json.loads(pts.read_text())["features"]
    assert {f["geometry"]["type"] for f in fixes} == {"Point"}
    assert [f["properties"]["ts"] for f in fixes] == [p["ts"] for p in track.points]

    out = env.ok("locations", "track", track.dev.imei, "-f", "csv", "--limit", limit).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["ts"] for r in rows] == [p["ts"] for p in track.points]


# -- videos ----------------------------------------------------------------------------------------


@dataclass
class Video:
    dev: Device
    name: str
    data: bytes
    sha256: str


@pytest.fixture(scope="module")
def video(env: Env) -> Video:
    dev = env.register("camera")
    data = os.urandom(3 * 1024 * 1024 + 12345)
    body = env.upload(dev, "front-0001.mp4", data)
    sha = hashlib.sha256(data).hexdigest()
    assert body["sha256"] == sha
    return Video(dev, "front-0001.mp4", data, sha)


def test_videos_list(env: Env, video: Video) -> None:
    items = env.json("videos", "list", video.dev.imei)
    assert [(v["name"], v["size"], v["sha256"], v["complete"]) for v in items] == \
        [(video.name, len(video.data), video.sha256, True)]
    assert video.name in env.ok("videos", "list", video.dev.imei).stdout


def test_videos_list_without_imei_lists_every_device(env: Env, video: Video) -> None:
    other = env.register("second camera")
    env.upload(other, "rear-0001.mp4", b"rear camera bytes")
    items = env.json("videos", "list", "--all")
    mine = {(v["imei"], v["name"]): v for v in items}
    assert mine[(video.dev.imei, video.name)]["sha256"] == video.sha256
    assert mine[(other.imei, "rear-0001.mp4")]["size"] == len(b"rear camera bytes")
    assert items[0]["imei"] == other.imei  # newest upload first
    table = env.ok("videos", "list").stdout
    assert other.imei in table and "rear-0001.mp4" in table and video.name in table


def test_download_matches_upload(env: Env, video: Video) -> None:
    dest = env.tmp / "dl-full.mp4"
    result = env.json("videos", "download", video.dev.imei, video.name, "-o", str(dest))
    assert result == {"path": str(dest), "size": len(video.data), "sha256": video.sha256, "verified": True,
                      "resumed_from": 0}
    assert dest.read_bytes() == video.data
    assert not dest.with_name(dest.name + ".part").exists()


class Recorder:
    """Wraps httpx.Client.send to see what the CLI asked for and what came back (still the real server)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str | None, int, str | None]] = []
        original = httpx.Client.send

        def send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            response = original(client, request, **kwargs)
            self.calls.append((request.url.path, request.headers.get("Range"), response.status_code,
                               response.headers.get("Content-Length")))
            return response

        monkeypatch.setattr(httpx.Client, "send", send)


def test_resumed_download_fetches_only_the_rest(env: Env, video: Video, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = env.tmp / "dl-resume.mp4"
    part = dest.with_name(dest.name + ".part")
    have = 1_000_003
    part.write_bytes(video.data[:have])  # what an interrupted download left
    rec = Recorder(monkeypatch)
    result = env.ok("videos", "download", video.dev.imei, video.name, "-o", str(dest), "--json")
    out = json.loads(result.stdout)
    assert out["resumed_from"] == have and out["sha256"] == video.sha256 and out["verified"] is True
    assert dest.read_bytes() == video.data and hashlib.sha256(dest.read_bytes()).hexdigest() == video.sha256
    assert not part.exists()
    downloads = [c for c in rec.calls if c[0].endswith("/" + video.name)]
    assert downloads == [(downloads[0][0], f"bytes={have}-", 206, str(len(video.data) - have))]
    assert f"resuming {video.name} at byte {have}" in result.stderr


def test_resume_proof_prefix_is_kept_not_refetched(env: Env, video: Video) -> None:
    """A wrong prefix is kept (only the rest is fetched), so the checksum catches it: exit 1, part removed."""
    dest = env.tmp / "dl-bad.mp4"
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(b"\0" * 4096)
    result = env.run("videos", "download", video.dev.imei, video.name, "-o", str(dest))
    assert result.exit_code == 1 and "SHA-256 mismatch" in result.stderr and "Traceback" not in result.output
    assert not part.exists() and not dest.exists()
    # running again downloads it whole and right
    env.ok("videos", "download", video.dev.imei, video.name, "-o", str(dest))
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == video.sha256


def test_complete_partial_is_finished_without_refetching(env: Env, video: Video) -> None:
    dest = env.tmp / "dl-done.mp4"
    dest.with_name(dest.name + ".part").write_bytes(video.data)  # all bytes arrived, rename never happened
    out = env.json("videos", "download", video.dev.imei, video.name, "-o", str(dest))
    assert out["resumed_from"] == len(video.data) and out["sha256"] == video.sha256
    assert dest.read_bytes() == video.data


def test_download_into_directory_and_progress(env: Env, video: Video) -> None:
    target = env.tmp / "downloads"
    target.mkdir()
    result = env.ok("videos", "download", video.dev.imei, video.name, "-o", str(target))
    assert (target / video.name).read_bytes() == video.data
    assert result.stdout == "" and "saved" in result.stderr and "verified" in result.stderr
