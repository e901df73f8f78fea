"""Retention on every backend combination (SQLite; MariaDB + MongoDB), with a clock the test controls:
a pass runs "as of" a date days ahead instead of the test sleeping for days. Old points, videos and
cleared alarms go; evidence (videos named by an alarm that is not cleared) stays; ``GET /storage``
agrees with what the stores hold; one process at a time runs a pass; an admin deletes a video by hand
(evidence only with ``force``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from tests.server.support import make_user, report_alarm
from tests.support import Device, RunningServer, ServerFactory
from truckx_server.domain import retention as retention_module
from truckx_server.models import format_time, utcnow

DAY = dt.timedelta(days=1)
DATA = b"dashcam clip " * 64


async def send_points(srv: RunningServer, dev: Device, times: list[dt.datetime], seq: int = 1) -> None:
    ws = await srv.connect(dev)
    points = [{"ts": format_time(t), "lat": 48.0 + i * 1e-4, "lon": 11.0, "speed_kmh": 50.0}
              for i, t in enumerate(times)]
    for i in range(0, len(points), 1000):
        await ws.send({"type": "locations", "seq": seq + i, "points": points[i:i + 1000]})
        await ws.wait_ack(seq + i)
    ws.close()


async def upload(srv: RunningServer, dev: Device, name: str, data: bytes = DATA) -> None:
    r = await srv.http.put(f"/api/v1/device/videos/{name}", content=data,
                           headers={"Authorization": f"Bearer {dev.token}"})
    assert r.status_code == 201, r.text


async def storage(srv: RunningServer) -> dict[str, Any]:
    r = await srv.http.get("/api/v1/admin/storage", headers=await srv.admin_headers())
    assert r.status_code == 200, r.text
    return r.json()


async def video_names(srv: RunningServer, dev: Device) -> set[str]:
    r = await srv.http.get(f"/api/v1/admin/devices/{dev.imei}/videos", headers=await srv.admin_headers())
    assert r.status_code == 200, r.text
    return {v["name"] for v in r.json()["items"]}


async def alarm_ids(srv: RunningServer, dev: Device) -> set[str]:
    r = await srv.http.get("/api/v1/admin/alarms", params={"imei": dev.imei, "limit": 1000},
                           headers=await srv.admin_headers())
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json()["items"]}


async def move(srv: RunningServer, alarm_id: str, *steps: str) -> None:
    for step in steps:
        r = await srv.http.post(f"/api/v1/admin/alarms/{alarm_id}/{step}", headers=await srv.admin_headers())
        assert r.status_code == 200, r.text


async def test_a_pass_removes_what_is_old_and_keeps_evidence(server_factory: ServerFactory) -> None:
    srv = await server_factory(retain_locations_days=30, retain_alarms_days=30, retain_videos_days=7)
    probe = srv.probe
    now = utcnow().replace(microsecond=0)
    a, b = await srv.register(), await srv.register()
    old = [now - 40 * DAY + i * dt.timedelta(seconds=10) for i in range(30)]
    kept = [now - 20 * DAY + i * dt.timedelta(seconds=10) for i in range(12)]
    await send_points(srv, a, old + kept)
    await send_points(srv, b, [now - 35 * DAY, now - 1 * DAY])

    for name in ("evidence.mp4", "acked.mp4", "cleared.mp4", "loose.mp4", "young.mp4"):
        await upload(srv, a, name)
    old_ts = format_time(now - 40 * DAY)
    active = await report_alarm(srv, a, ts=old_ts, files=["evidence.mp4"])
    acked = await report_alarm(srv, a, ts=old_ts, files=["acked.mp4"])
    cleared_old = await report_alarm(srv, a, ts=old_ts, files=["cleared.mp4"])
    cleared_new = await report_alarm(srv, a, ts=format_time(now - 2 * DAY), files=["young.mp4"])
    await move(srv, acked["id"], "ack")
    await move(srv, cleared_old["id"], "ack", "clear")
    await move(srv, cleared_new["id"], "clear")

    before = await storage(srv)
    assert before["locations"]["count"] == 44 and before["locations"]["oldest"] == format_time(old[0])
    assert before["alarms"]["count"] == 4 and before["videos"]["count"] == 5
    assert before["videos"]["bytes"] == 5 * len(DATA) and before["videos"]["evidence"] == 2
    assert before["last_pass"] is None
    assert before["retention"] == {"locations_days": 30, "videos_days": 7, "alarms_days": 30, "interval_s": 3600}

    # as of three days from now: points and the cleared alarm are old enough, videos (3 days) are not
    first = await probe.run_retention(now + 3 * DAY)
    assert first is not None and first["complete"]
    assert first["removed"] == {"locations": 31, "alarms": 1, "videos": 0, "video_bytes": 0}
    assert [p.ts for p in await probe.stored_points(a.imei)] == kept
    assert [p.ts for p in await probe.stored_points(b.imei)] == [now - 1 * DAY]
    assert await alarm_ids(srv, a) == {active["id"], acked["id"], cleared_new["id"]}
    assert await video_names(srv, a) == {"evidence.mp4", "acked.mp4", "cleared.mp4", "loose.mp4", "young.mp4"}

    # as of ten days from now the videos are old: all go but those an alarm that is not cleared names
    second = await probe.run_retention(now + 10 * DAY)
    assert second is not None
    assert second["removed"] == {"locations": 0, "alarms": 0, "videos": 3, "video_bytes": 3 * len(DATA)}
    assert await video_names(srv, a) == {"evidence.mp4", "acked.mp4"}
    for name in ("cleared.mp4", "loose.mp4", "young.mp4"):
        assert await probe.video_object_size(a.imei, name) is None
    for name in ("evidence.mp4", "acked.mp4"):
        assert await probe.video_object_size(a.imei, name) == len(DATA)
        r = await srv.http.get(f"/api/v1/admin/devices/{a.imei}/videos/{name}", headers=await srv.admin_headers())
        assert r.status_code == 200 and r.content == DATA

    after = await storage(srv)
    stored = len(await probe.stored_points(a.imei)) + len(await probe.stored_points(b.imei))
    assert after["locations"]["count"] == stored == 13
    assert after["locations"]["oldest"] == format_time(kept[0])
    assert after["alarms"]["count"] == len(await alarm_ids(srv, a)) == 3
    assert after["videos"]["count"] == 2 and after["videos"]["bytes"] == 2 * len(DATA)
    assert after["videos"]["evidence"] == 2
    assert after["last_pass"]["removed"] == {"locations": 0, "alarms": 0, "videos": 3, "video_bytes": 3 * len(DATA)}
    assert after["last_pass"]["complete"] is True

    # clearing the active alarm ends the evidence: the next pass takes the video (the alarm is recent)
    await move(srv, active["id"], "clear")
    third = await probe.run_retention(now + 10 * DAY)
    assert third is not None and third["removed"]["videos"] == 1
    assert await video_names(srv, a) == {"acked.mp4"}


async def test_nothing_is_removed_when_retention_is_off(server: RunningServer) -> None:
    dev = await server.register()
    now = utcnow().replace(microsecond=0)
    await send_points(server, dev, [now - 3000 * DAY])
    await upload(server, dev, "forever.mp4")
    alarm = await report_alarm(server, dev, ts=format_time(now - 3000 * DAY))
    await move(server, alarm["id"], "clear")
    result = await server.probe.run_retention(now + 9000 * DAY)
    assert result is not None and result["removed"] == {"locations": 0, "alarms": 0, "videos": 0, "video_bytes": 0}
    body = await storage(server)
    assert (body["locations"]["count"], body["alarms"]["count"], body["videos"]["count"]) == (1, 1, 1)
    assert body["last_pass"]["removed"]["locations"] == 0


async def test_batches_walk_a_large_backlog(server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention_module, "LOCATION_BATCH", 7)
    monkeypatch.setattr(retention_module, "ALARM_BATCH", 3)
    monkeypatch.setattr(retention_module, "VIDEO_BATCH", 2)
    srv = await server_factory(retain_locations_days=3, retain_alarms_days=3, retain_videos_days=1)
    now = utcnow().replace(microsecond=0)
    dev = await srv.register()
    await send_points(srv, dev, [now - 5 * DAY + i * dt.timedelta(seconds=1) for i in range(50)] + [now - DAY / 2])
    for i in range(8):
        alarm = await report_alarm(srv, dev, ts=format_time(now - 5 * DAY))
        await move(srv, alarm["id"], "clear")
    for i in range(5):
        await upload(srv, dev, f"clip{i}.mp4")
    result = await srv.probe.run_retention(now + DAY + dt.timedelta(hours=1))
    assert result is not None
    assert result["removed"] == {"locations": 50, "alarms": 8, "videos": 5, "video_bytes": 5 * len(DATA)}
    assert [p.ts for p in await srv.probe.stored_points(dev.imei)] == [now - DAY / 2]
    assert await video_names(srv, dev) == set()


async def test_one_process_at_a_time(server_factory: ServerFactory) -> None:
    """Two servers on the same stores: the lease lets one pass run at a time, and what they remove adds up
    to what was there (nothing is removed twice, nothing is left)."""
    a = await server_factory(retain_locations_days=1, retain_alarms_days=1, retain_videos_days=1)
    b = await server_factory(retain_locations_days=1, retain_alarms_days=1, retain_videos_days=1)
    now = utcnow().replace(microsecond=0)
    dev = await a.register()
    await send_points(a, dev, [now - 3 * DAY + i * dt.timedelta(seconds=1) for i in range(40)])
    for i in range(3):
        await upload(a, dev, f"v{i}.mp4")

    rows = a.probe.retention.rows
    real = utcnow()
    assert await rows.take_lease("retention", "node-a", real, 60)
    assert not await rows.take_lease("retention", "node-b", real, 60)
    assert await b.probe.run_retention(now + 2 * DAY) is None  # a holds it: b skips its pass
    assert len(await a.probe.stored_points(dev.imei)) == 40
    assert await rows.take_lease("retention", "node-a", real, 60)  # the holder renews
    assert await rows.take_lease("retention", "node-b", real + dt.timedelta(seconds=61), 60)  # expired
    await rows.release_lease("retention", "node-b", real)

    results = await asyncio.gather(a.probe.run_retention(now + 2 * DAY), b.probe.run_retention(now + 2 * DAY))
    done = [r for r in results if r is not None]
    assert done, "one of the two passes ran"
    assert sum(r["removed"]["locations"] for r in done) == 40
    assert sum(r["removed"]["videos"] for r in done) == 3
    assert await a.probe.stored_points(dev.imei) == []
    assert await video_names(b, dev) == set()


async def test_admin_deletes_a_video(api: RunningServer) -> None:
    srv = api
    admin = await srv.admin_headers()
    dev = await srv.register()
    await upload(srv, dev, "proof.mp4")
    await upload(srv, dev, "spare.mp4")
    alarm = await report_alarm(srv, dev, files=["proof.mp4"])
    url = f"/api/v1/admin/devices/{dev.imei}/videos"

    viewer = await make_user(srv, "watcher", "viewer")
    r = await srv.http.delete(f"{url}/spare.mp4", headers=viewer)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"

    r = await srv.http.delete(f"{url}/proof.mp4", headers=admin)
    assert r.status_code == 409 and r.json()["error"]["alarm_ids"] == [alarm["id"]]
    assert await srv.probe.video_object_size(dev.imei, "proof.mp4") == len(DATA)
    r = await srv.http.delete(f"{url}/proof.mp4", params={"force": "maybe"}, headers=admin)
    assert r.status_code == 400

    with srv.probe.upload_running(dev.imei, "spare.mp4"):
        r = await srv.http.delete(f"{url}/spare.mp4", headers=admin)
        assert r.status_code == 409 and "upload" in r.json()["error"]["message"]
    r = await srv.http.delete(f"{url}/spare.mp4", headers=admin)
    assert r.status_code == 204 and r.content == b""
    r = await srv.http.delete(f"{url}/proof.mp4", params={"force": "true"}, headers=admin)
    assert r.status_code == 204
    assert await video_names(srv, dev) == set()
    assert await srv.probe.video_object_size(dev.imei, "proof.mp4") is None
    r = await srv.http.get(f"{url}/proof.mp4", headers=admin)
    assert r.status_code == 404
    r = await srv.http.get(f"/api/v1/admin/alarms/{alarm['id']}", headers=admin)
    assert r.json()["files"] == [{"name": "proof.mp4", "arrived": False, "thumbnail": False}]  # the alarm stays, its video went

    r = await srv.http.delete(f"{url}/proof.mp4", headers=admin)
    assert r.status_code == 404
    r = await srv.http.delete("/api/v1/admin/devices/123/videos/x.mp4", headers=admin)
    assert r.status_code == 400


async def test_an_incomplete_upload_can_be_deleted(server: RunningServer) -> None:
    dev = await server.register()
    r = await server.http.patch("/api/v1/device/videos/stuck.mp4", content=DATA[:100],
                                headers={"Authorization": f"Bearer {dev.token}", "Upload-Offset": "0"})
    assert r.status_code == 204
    body = await storage(server)
    assert body["videos"]["incomplete"] == {"count": 1, "bytes": 100} and body["videos"]["count"] == 0
    r = await server.http.delete(f"/api/v1/admin/devices/{dev.imei}/videos/stuck.mp4",
                                 headers=await server.admin_headers())
    assert r.status_code == 204
    r = await server.http.head("/api/v1/device/videos/stuck.mp4", headers={"Authorization": f"Bearer {dev.token}"})
    assert r.headers["Upload-Offset"] == "0"
    assert (await storage(server))["videos"]["incomplete"] == {"count": 0, "bytes": 0}
    r = await server.http.delete(f"/api/v1/admin/devices/{dev.imei}/videos/..%2F..%2Fjwt-secret",
                                 headers=await server.admin_headers())
    assert r.status_code == 400 and (server.settings.data_dir / "jwt-secret").exists()
