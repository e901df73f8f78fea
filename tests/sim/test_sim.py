"""The simulator against a real in-process server: a forced restart and a reset command in the middle,
and every point the simulated devices generated is stored exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable

import av
import pytest

from tests.support import RunningServer, ServerFactory, new_imei, stop_server
from truckx_sim import SimConfig, arun
from truckx_sim.clips import ClipCache, ClipSpec
from truckx_sim.main import main as sim_main
from truckx_sim.stats import Histogram
from truckx_sim.video import clip_spec


async def register_many(server: RunningServer, n: int) -> list[dict[str, str]]:
    r = await server.http.post("/api/v1/admin/devices", json={"devices": [{"imei": new_imei()} for _ in range(n)]},
                               headers=await server.admin_headers())
    assert r.status_code == 201, r.text
    return [{"imei": d["imei"], "secret": d["secret"]} for d in r.json()["devices"]]


def sim_config(server: RunningServer, devices: int, **kw: object) -> SimConfig:
    values: dict = dict(url=server.base_url, devices=devices, duration_s=6.0, report_interval_s=0.2,
                        backoff_base_s=0.1, backoff_cap_s=1.0, reset_delay_s=1.0, drain_timeout_s=15.0,
                        collect_points=True, seed=7, video_size=0, alarm_rate_per_h=0.0)
    values.update(kw)
    return SimConfig(**values)


async def assert_stored_exactly_once(server: RunningServer, summary) -> int:  # noqa: ANN001
    total = 0
    for imei, dev in summary.devices.items():
        assert dev.fatal is None, (imei, dev.fatal)
        assert dev.unacked == 0, f"{imei}: {dev.unacked} points never acknowledged"
        stored = await server.probe.stored_points(imei, 1_000_000)
        stored_ts = [p.ts for p in stored]
        generated = dev.generated
        assert len(generated) == dev.points_generated > 0
        assert len(set(generated)) == len(generated), "timestamps must be unique per device"
        assert sorted(stored_ts) == sorted(generated), (
            f"{imei}: generated {len(generated)}, stored {len(stored_ts)}, "
            f"missing {len(set(generated) - set(stored_ts))}, extra {len(set(stored_ts) - set(generated))}")
        total += len(generated)
    return total


async def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g} s")
        await asyncio.sleep(0.05)


class Ticks:
    """The simulator's counters as of its last tick (``arun``'s ``on_tick``), for tests that wait for
    the fleet to reach a state rather than for a number of seconds."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.connected = 0

    def __call__(self, stats: Any, _gauges: Any) -> None:
        self.counters = dict(stats.counters)
        self.connected = stats.connected

    def __getitem__(self, name: str) -> int:
        return self.counters.get(name, 0)


@pytest.mark.slow
async def test_fleet_survives_restart_and_reset(server_factory: ServerFactory) -> None:
    server = await server_factory()
    creds = await register_many(server, 30)
    # The fleet drives until everything below has happened (at most 60 s), not for a fixed time: on a
    # loaded machine a restart over MariaDB + MongoDB can take longer than a fixed window allows.
    latest: dict[str, object] = {}
    done = asyncio.Event()
    config = sim_config(server, 30, duration_s=60.0)
    run = asyncio.create_task(arun(config, creds, on_tick=lambda stats, _gauges: latest.update(stats=stats),
                                   stop_early=done.is_set))

    await asyncio.sleep(2.0)
    # forced restart over the same stores and port
    data_dir, port = server.settings.data_dir, server.port
    await stop_server(server)
    await asyncio.sleep(0.5)
    server = await server_factory(data_dir=data_dir, port=port)
    # wait for the fleet to come back, then reset one device and change another's interval
    for _ in range(100):
        if server.probe.session_count == 30:
            break
        await asyncio.sleep(0.05)
    reset_cmd = await server.probe.send_command(creds[0]["imei"], {"command": "reset"}, "test")
    interval_cmd = await server.probe.send_command(
        creds[1]["imei"], {"command": "set_report_interval", "args": {"seconds": 1}}, "test")

    async def until_done() -> None:
        """Both commands answered, and all 30 devices connected again (the reset one once more)."""
        while not run.done():
            stats = latest.get("stats")
            statuses = [(await server.probe.sql.commands.get(c["id"]))["status"] for c in (reset_cmd, interval_cmd)]
            if (stats is not None and statuses == ["succeeded", "succeeded"] and stats.connected == 30
                    and stats.counters["connects"] >= 30 * 2 + 1):
                done.set()
                return
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(until_done())
    summary = await asyncio.wait_for(run, 120)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    out = summary.to_json()
    assert out["devices"] == 30 and out["connected"] == 30
    assert out["points_acked"] >= out["points_generated"] > 30 * 10
    assert out["resets"] == 1 and out["commands"] >= 2
    assert out["ack_latency_ms"]["p50"] is not None
    for cmd in (reset_cmd, interval_cmd):
        stored = await server.probe.sql.commands.get(cmd["id"])
        assert stored["status"] == "succeeded", stored
    assert await assert_stored_exactly_once(server, summary) == out["points_generated"]
    # every device reconnected after the restart; the reset one once more
    assert out["connects"] >= 30 * 2 + 1


async def test_devices_buffer_while_offline_and_resend(server_factory: ServerFactory) -> None:
    """Devices keep the points they generate while the server is down and deliver them all later, in
    batches."""
    server = await server_factory()
    creds = await register_many(server, 5)
    data_dir, port = server.settings.data_dir, server.port
    ticks, finished = Ticks(), asyncio.Event()
    config = sim_config(server, 5, duration_s=60.0, report_interval_s=0.05)
    run = asyncio.create_task(arun(config, creds, on_tick=ticks, stop_early=finished.is_set))
    await wait_until(lambda: ticks["points_acked"] >= 5 * 5, what="every device streaming")
    await stop_server(server)
    offline_from = ticks["points_generated"]
    # ~20 points per device generated offline, however long that takes on this machine
    await wait_until(lambda: ticks["points_generated"] >= offline_from + 5 * 20, what="points made offline")
    server = await server_factory(data_dir=data_dir, port=port)
    await wait_until(lambda: ticks.connected == 5 and ticks["points_acked"] >= offline_from + 5 * 25,
                     what="the offline points delivered")
    finished.set()
    summary = await asyncio.wait_for(run, 60)
    assert summary.stats.counters["messages_sent"] < summary.stats.counters["points_sent"]  # batched resends
    await assert_stored_exactly_once(server, summary)


def test_histogram_percentiles_merge() -> None:
    a, b = Histogram(), Histogram()
    for i in range(1, 1001):
        (a if i % 2 else b).add(float(i))
    a.merge(Histogram.from_dict(json.loads(json.dumps(b.to_dict()))))
    assert a.count == 1000
    assert 495 <= a.percentile(50) <= 506
    assert 985 <= a.percentile(99) <= 1000


async def test_cli_provisions_caches_and_prints_json(server: RunningServer, tmp_path, capsys) -> None:  # noqa: ANN001
    secrets = tmp_path / "secrets.json"
    pw = tmp_path / "pw"
    pw.write_text("test-admin-password\n")
    argv = ["--url", server.base_url, "--devices", "3", "--duration", "1.5", "--report-interval", "0.2",
            "--provision", "--admin-password-file", str(pw), "--secrets-file", str(secrets), "--json",
            "--no-dashboard", "--video-size", "0"]
    # the CLI owns its event loop: run it in a thread while this loop keeps serving
    assert await asyncio.to_thread(sim_main, argv) == 0
    first = json.loads(capsys.readouterr().out)
    for key in ("devices", "connected", "points_sent", "points_acked", "alarms", "uploads", "commands", "errors"):
        assert key in first
    assert first["devices"] == 3 and first["connected"] == 3 and first["points_acked"] > 0
    assert set(first["ack_latency_ms"]) >= {"p50", "p99"}
    cached = json.loads(secrets.read_text())["devices"]
    assert len(cached) == 3 and oct(secrets.stat().st_mode & 0o777) == "0o600"
    # a second run reuses the cached devices (registers nothing new)
    assert await asyncio.to_thread(sim_main, argv) == 0
    json.loads(capsys.readouterr().out)
    assert json.loads(secrets.read_text())["devices"] == cached


def probe(data: bytes) -> dict:
    """What PyAV reads from an MP4: codec, duration, size, frame count, and the decoded frames' luma."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        lumas = [bytes(f.planes[0]) for f in container.decode(stream)]
        return {"codec": stream.codec_context.name, "duration_s": float(container.duration / av.time_base),
                "width": stream.codec_context.width, "height": stream.codec_context.height, "frames": len(lumas),
                "lumas": lumas}


def test_clip_is_real_h264_made_once_and_cached(tmp_path: Path) -> None:
    spec = ClipSpec(label="IMEI 356938035643809")
    cache = ClipCache(tmp_path / "clips")
    clip = cache.get_now(spec)
    assert cache.encoded == 1 and cache.path(spec).read_bytes() == clip.data
    assert clip.sha256 == hashlib.sha256(clip.data).hexdigest()
    assert 5_000 < clip.size < 500_000, clip.size  # tens of KB
    info = probe(clip.data)
    assert info["codec"] == "h264" and info["duration_s"] > 0 and abs(info["duration_s"] - spec.seconds) < 0.5
    assert (info["width"], info["height"]) == (spec.width, spec.height)
    assert info["frames"] == spec.fps * spec.seconds
    assert len(set(info["lumas"])) == info["frames"]  # the pattern moves: no two frames alike
    # the same spec again: from memory, then (another process) from disk; nothing encoded again
    assert cache.get_now(spec) is clip
    again = ClipCache(tmp_path / "clips")
    assert again.get_now(spec).data == clip.data and again.encoded == 0 and again.read_from_disk == 1
    # another label is another clip, under another key
    other = ClipSpec(label="IMEI 490154203237518")
    assert other.key() != spec.key() and again.get_now(other).data != clip.data
    with pytest.raises(ValueError):
        ClipSpec(width=100)


async def test_clip_cache_encodes_once_for_many_concurrent_requests(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path / "clips")
    spec = ClipSpec(label="POOL", width=320, height=180, seconds=1.0)
    clips = await asyncio.gather(*(cache.get(spec) for _ in range(20)))
    assert cache.encoded == 1 and len({c.sha256 for c in clips}) == 1


async def test_alarms_with_videos_uploaded_and_resumed(server_factory: ServerFactory, tmp_path: Path) -> None:
    """Alarms carry their file names and are idempotent; every upload is a real H.264 clip, interrupted
    halfway and resumed (HEAD for the offset, PATCH for the rest), and the stored video is complete and
    decodes."""
    server = await server_factory()
    creds = await register_many(server, 4)
    # ~1 alarm per device per second
    config = sim_config(server, 4, duration_s=3.0, report_interval_s=0.5, alarm_rate_per_h=3600.0,
                        video_size=300_000, upload_interrupt_rate=1.0, cache_dir=str(tmp_path))
    summary = await asyncio.wait_for(arun(config, creds), 90)
    out = summary.to_json()
    assert out["alarms"] >= 2, out
    assert out["uploads"] == out["alarms"], out
    assert out["upload_resumes"] >= 1, out
    assert out["errors"] == 0, out["error_kinds"]
    # one clip per device (a small fleet: its IMEI burned in), each made once
    assert 1 <= out["clips_encoded"] <= 4 and len(list((tmp_path / "clips").glob("*.mp4"))) == out["clips_encoded"]
    headers = await server.admin_headers()
    checked = 0
    for dev in summary.devices.values():
        if not dev.videos:
            continue
        expected = ClipCache(tmp_path / "clips").get_now(clip_spec(config.replace(video_labels="device"), dev.imei))
        r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos", headers=headers)
        assert r.status_code == 200, r.text
        videos = {v["name"]: v for v in r.json()["items"]}
        for name in dev.videos:
            assert videos[name]["complete"] and videos[name]["size"] == expected.size
            assert videos[name]["sha256"] == expected.sha256
        r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/{dev.videos[0]}", headers=headers)
        assert r.status_code == 200 and r.content == expected.data
        info = probe(r.content)
        assert info["codec"] == "h264" and info["duration_s"] > 0
        r = await server.http.get("/api/v1/admin/alarms", params={"imei": dev.imei}, headers=headers)
        files = [f for a in r.json()["items"] for f in a["files"]]
        assert files and all(f["arrived"] for f in files)
        checked += 1
    assert checked >= 1


async def test_random_video_mode_still_uploads_its_size(server_factory: ServerFactory) -> None:
    server = await server_factory()
    creds = await register_many(server, 2)
    config = sim_config(server, 2, duration_s=2.0, report_interval_s=0.5, alarm_rate_per_h=7200.0,
                        video="random", video_size=100_000, upload_interrupt_rate=1.0)
    summary = await asyncio.wait_for(arun(config, creds), 60)
    out = summary.to_json()
    assert out["uploads"] == out["alarms"] >= 1 and out["errors"] == 0, out
    assert out["upload_bytes"] == 100_000 * out["uploads"] and out["clips_encoded"] == 0


async def test_summary_goes_to_stdout(server: RunningServer, tmp_path, capsys) -> None:  # noqa: ANN001
    secrets = tmp_path / "secrets.json"
    pw = tmp_path / "pw"
    pw.write_text("test-admin-password\n")
    argv = ["--url", server.base_url, "--devices", "2", "--duration", "1", "--report-interval", "0.2",
            "--provision", "--admin-password-file", str(pw), "--secrets-file", str(secrets), "--no-dashboard",
            "--video", "none"]
    assert await asyncio.to_thread(sim_main, argv) == 0
    captured = capsys.readouterr()
    assert "truckx-sim summary" in captured.out and "points_acked" in captured.out
    assert "summary" not in captured.err and "truckx-sim: 2 devices against" in captured.err
