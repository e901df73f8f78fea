"""Video metadata and thumbnails (``media.py``), and the fleet-wide video list.

Real clips made with PyAV (tests/clips.py) are uploaded to a real server; a child process reads each
one through the video store and the result shows in the listings, the alarms' file entries, the events
feed and ``.../thumbnail``. The prober's bounds (read budget, time limit, memory limit, queue) are
exercised with real child processes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from typing import Any, AsyncIterator

import av
import pytest
import tornado.websocket

from tests.clips import h264_mp4, vp9_webm
from tests.server.support import events_socket, report_alarm
from tests.support import RunningServer, ServerFactory, media_read, stop_server, wait_for_thumbnail
from truckx_server.media import READ_MAX, MediaProber, ProbeSkipped
from truckx_server.storage.videos_fs import THUMBS_DIR


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:3] == b"\xff\xd8\xff", "not a JPEG"
    with av.open(io.BytesIO(data)) as c:
        frame = next(c.decode(video=0))
        return frame.width, frame.height


async def next_event(ws: tornado.websocket.WebSocketClientConnection, predicate: Any,
                     timeout: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.read_message()
            assert frame is not None, "the feed closed"
            event = json.loads(frame)
            if predicate(event):
                return event


async def upload(server: RunningServer, token: str, name: str, data: bytes) -> None:
    r = await server.http.put(f"/api/v1/device/videos/{name}", content=data,
                              headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text


# -- metadata and thumbnails ------------------------------------------------------------------------


async def test_an_h264_clip_gets_its_metadata_and_thumbnail_within_10_s(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register()
    alarm = await report_alarm(api, dev, files=["front.mp4"])
    assert alarm["files"] == [{"name": "front.mp4", "arrived": False, "thumbnail": False}]
    feed = await events_socket(api, admin)
    clip = h264_mp4(3.0, 640, 360)
    await upload(api, dev.token, "front.mp4", clip)
    completed = time.monotonic()

    first = await next_event(feed, lambda e: e["type"] == "video")
    assert first["imei"] == dev.imei and first["video"]["complete"] and first["video"]["thumbnail"] is False
    read = await next_event(feed, lambda e: e["type"] == "video" and e["video"]["thumbnail"])
    ready_s = time.monotonic() - completed
    assert ready_s < 10, f"metadata and thumbnail took {ready_s:.1f} s"
    feed.close()
    video = read["video"]
    assert (video["name"], video["codec"], video["width"], video["height"]) == ("front.mp4", "h264", 640, 360)
    assert video["duration_s"] == pytest.approx(3.0, abs=0.1)

    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/videos", headers=admin)
    [item] = r.json()["items"]
    assert {k: item[k] for k in ("imei", "duration_s", "width", "height", "codec", "thumbnail")} == \
        {"imei": dev.imei, "duration_s": video["duration_s"], "width": 640, "height": 360, "codec": "h264",
         "thumbnail": True}
    assert item["alarm_ids"] == [alarm["id"]]

    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/front.mp4/thumbnail", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"].startswith("private")
    assert jpeg_size(r.content) == (320, 180)  # 320 wide, the clip's aspect ratio

    r = await api.http.get(f"/api/v1/admin/alarms/{alarm['id']}", headers=admin)
    assert r.json()["files"] == [{"name": "front.mp4", "arrived": True, "thumbnail": True}]


async def test_a_vp9_webm_clip_too(server: RunningServer) -> None:
    dev = await server.register()
    await upload(server, dev.token, "cabin.webm", vp9_webm(2.0, 320, 240))
    row = await media_read(server, dev.imei, "cabin.webm")
    assert (row["codec"], row["width"], row["height"], row["thumbnail"]) == ("vp9", 320, 240, True)
    assert row["duration_s"] == pytest.approx(2.0, abs=0.15)
    thumb = await wait_for_thumbnail(server, dev.imei, "cabin.webm", await server.admin_headers())
    assert jpeg_size(thumb) == (320, 240)  # never upscaled


async def test_files_that_are_not_decodable_videos_get_nulls(server: RunningServer) -> None:
    admin = await server.admin_headers()
    dev = await server.register()
    clip = h264_mp4(3.0, 640, 360)
    files = {"noise.mp4": os.urandom(300_000), "text.mp4": b"hello, this is not a video\n" * 100,
             "cut.mp4": clip[: len(clip) * 2 // 5],  # the index (moov) is at the end: cut off
             "empty.mp4": b"\x00"}
    for name, data in files.items():
        await upload(server, dev.token, name, data)
    for name in files:
        row = await media_read(server, dev.imei, name)
        assert {k: row[k] for k in ("duration_s", "width", "height", "codec", "thumbnail")} == \
            {"duration_s": None, "width": None, "height": None, "codec": None, "thumbnail": False}, name
        r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/{name}/thumbnail", headers=admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos", headers=admin)
    assert {v["name"]: v["codec"] for v in r.json()["items"]} == {n: None for n in files}
    metrics = (await server.http.get("/metrics")).text
    assert f'truckx_video_probes_total{{outcome="not_video"}} {float(len(files))}' in metrics


async def test_thumbnail_is_404_until_made_and_for_unknown_names(server_factory: ServerFactory) -> None:
    server = await server_factory(media_workers=0)  # nothing is read
    admin = await server.admin_headers()
    dev = await server.register()
    await upload(server, dev.token, "front.mp4", h264_mp4(2.0, 320, 240))
    for name in ("front.mp4", "missing.mp4"):
        r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/{name}/thumbnail", headers=admin)
        assert r.status_code == 404
    for bad in ("..", ".thumbs", "a%2Fb"):
        r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/{bad}/thumbnail", headers=admin)
        assert r.status_code in (400, 404), bad
    [item] = (await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos", headers=admin)).json()["items"]
    assert item["thumbnail"] is False and item["codec"] is None
    assert (await server.probe.sql.videos.get(dev.imei, "front.mp4"))["probed_at"] is None


async def test_videos_missed_before_are_read_by_the_sweep(server_factory: ServerFactory, tmp_path: Any) -> None:
    first = await server_factory(media_workers=0)
    dev = await first.register()
    await upload(first, dev.token, "older.mp4", h264_mp4(2.0, 320, 240))
    await stop_server(first)
    # the next start (reading enabled) finds it without any new upload
    second = await server_factory()
    row = await media_read(second, dev.imei, "older.mp4")
    assert row["codec"] == "h264" and row["thumbnail"]


async def test_thumbnails_live_where_no_video_name_reaches(server: RunningServer) -> None:
    admin = await server.admin_headers()
    dev = await server.register()
    await upload(server, dev.token, "clip.mp4", h264_mp4(2.0, 320, 240))
    await wait_for_thumbnail(server, dev.imei, "clip.mp4", admin)
    # a device naming a file as the thumbnail might be named gets its own file, not the thumbnail
    await upload(server, dev.token, "clip.mp4.jpg", b"a device's own file")
    r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/clip.mp4.jpg", headers=admin)
    assert r.content == b"a device's own file"
    r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos", headers=admin)
    assert [v["name"] for v in r.json()["items"]] == ["clip.mp4", "clip.mp4.jpg"]
    root = server.settings.resolved_video_dir
    assert (root / THUMBS_DIR / dev.imei / "clip.mp4.jpg").is_file()
    assert sorted(p.name for p in (root / dev.imei).iterdir()) == ["clip.mp4", "clip.mp4.jpg"]


async def test_deleting_a_video_deletes_its_thumbnail(server: RunningServer) -> None:
    admin = await server.admin_headers()
    dev = await server.register()
    await upload(server, dev.token, "gone.mp4", h264_mp4(2.0, 320, 240))
    await wait_for_thumbnail(server, dev.imei, "gone.mp4", admin)
    thumb = server.settings.resolved_video_dir / THUMBS_DIR / dev.imei / "gone.mp4.jpg"
    assert thumb.is_file()
    r = await server.http.delete(f"/api/v1/admin/devices/{dev.imei}/videos/gone.mp4", headers=admin)
    assert r.status_code == 204, r.text
    assert not thumb.exists()
    r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/gone.mp4/thumbnail", headers=admin)
    assert r.status_code == 404


# -- the prober's bounds (real child processes) ------------------------------------------------------


def serve(data: bytes, log: list[tuple[int, int]] | None = None, stall: bool = False):  # noqa: ANN201
    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        if log is not None:
            log.append((start, end))
        if stall:
            await asyncio.Event().wait()  # a store that never answers
        for i in range(start, end, 64 * 1024):
            yield data[i:min(end, i + 64 * 1024)]
    return read


async def test_the_file_is_read_in_bounded_pieces_never_whole() -> None:
    clip = h264_mp4(3.0, 640, 360)
    padded = clip + os.urandom(20 * 1024 * 1024)  # a long file: only what FFmpeg needs is read
    log: list[tuple[int, int]] = []
    info = await MediaProber().probe(len(padded), serve(padded, log))
    assert info.codec == "h264" and info.thumbnail
    assert max(end - start for start, end in log) <= READ_MAX
    assert sum(end - start for start, end in log) < len(padded) // 10  # FFmpeg reads 256 KiB at a time


async def test_a_file_that_needs_too_much_reading_is_given_up() -> None:
    clip = h264_mp4(3.0, 640, 360)
    prober = MediaProber(read_budget=4096)
    info = await prober.probe(len(clip), serve(clip))
    assert info.codec is None and info.thumbnail is None and prober.outcomes == {"failed": 1}


async def test_the_time_limit_kills_the_child() -> None:
    clip = h264_mp4(3.0, 640, 360)
    prober = MediaProber(timeout_s=2.0)
    started = time.monotonic()
    info = await prober.probe(len(clip), serve(clip, stall=True))
    assert info.codec is None and prober.outcomes == {"timeout": 1}
    assert time.monotonic() - started < 10
    assert not prober._children  # noqa: SLF001 - killed and reaped


async def test_the_memory_limit_holds_the_child() -> None:
    clip = h264_mp4(3.0, 640, 360)
    prober = MediaProber(memory_bytes=48 * 1024 * 1024)  # too little for FFmpeg: it fails, the server lives on
    info = await prober.probe(len(clip), serve(clip))
    assert info.codec is None and prober.outcomes == {"failed": 1}


async def test_the_queue_is_bounded() -> None:
    clip = h264_mp4(1.0, 160, 120)
    prober = MediaProber(workers=1, queue_limit=1, timeout_s=30)
    running = asyncio.ensure_future(prober.probe(len(clip), serve(clip, stall=True)))
    while prober.pending < 1:
        await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(prober.probe(len(clip), serve(clip)))
    while prober.pending < 2:
        await asyncio.sleep(0.01)
    with pytest.raises(ProbeSkipped):  # a third one does not queue
        await prober.probe(len(clip), serve(clip))
    running.cancel()  # its child is killed and reaped; the waiting one runs
    with pytest.raises(asyncio.CancelledError):
        await running
    assert (await waiting).codec == "h264"
    assert not prober._children  # noqa: SLF001
    prober.close()
    with pytest.raises(ProbeSkipped):
        await prober.probe(len(clip), serve(clip))


# -- GET /api/v1/admin/videos -----------------------------------------------------------------------


async def test_fleet_list_is_newest_first_with_filters_and_keyset_pages(api: RunningServer) -> None:
    admin = await api.admin_headers()
    a, b = await api.register(), await api.register()
    uploads = [(a, "a1.mp4"), (b, "b1.mp4"), (a, "a2.mp4"), (b, "b2.mp4"), (a, "a3.mp4")]
    for dev, name in uploads:
        await upload(api, dev.token, name, name.encode() * 10)
    # an unfinished upload: listed last, without uploaded_at
    r = await api.http.patch("/api/v1/device/videos/b-part.mp4", content=b"half",
                             headers={"Authorization": f"Bearer {b.token}", "Upload-Offset": "0"})
    assert r.status_code == 204
    mine = {a.imei, b.imei}

    async def walk(limit: int, **params: Any) -> list[tuple[str, str]]:
        seen, cursor = [], None
        while True:
            q = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
            r = await api.http.get("/api/v1/admin/videos", params=q, headers=admin)
            assert r.status_code == 200, r.text
            page = r.json()
            seen += [(v["imei"], v["name"]) for v in page["items"] if v["imei"] in mine]
            if page["next_cursor"] is None:
                return seen
            cursor = page["next_cursor"]

    newest_first = [(d.imei, n) for d, n in reversed(uploads)]
    for limit in (1, 2, 100):
        assert await walk(limit, imei=[a.imei, b.imei]) == newest_first + [(b.imei, "b-part.mp4")], limit
    assert await walk(2, imei=a.imei) == [(a.imei, "a3.mp4"), (a.imei, "a2.mp4"), (a.imei, "a1.mp4")]
    assert await walk(3, imei=f"{a.imei},{b.imei}", complete="false") == [(b.imei, "b-part.mp4")]
    assert await walk(3, imei=[a.imei, b.imei], complete="true") == newest_first

    items = (await api.http.get("/api/v1/admin/videos", params={"imei": [a.imei, b.imei]}, headers=admin)).json()
    times = {v["name"]: v["uploaded_at"] for v in items["items"]}
    assert times["b-part.mp4"] is None
    middle = times["a2.mp4"]
    assert await walk(2, imei=[a.imei, b.imei], since=middle) == newest_first[:3]
    assert await walk(2, imei=[a.imei, b.imei], until=middle) == newest_first[3:]

    for params in ({"cursor": "not-a-cursor"}, {"complete": "maybe"}, {"since": "yesterday"},
                   {"imei": "123"}, {"limit": "0"}):
        r = await api.http.get("/api/v1/admin/videos", params=params, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument", params
