"""Crash tests at the process level: a real ``truckx-server`` (tests/process.py) killed with SIGKILL
while it works, on each store combination (the embedded default; MariaDB + MongoDB), then started
again on the same data.

- Ingest: devices stream locations over real WebSockets, several frames in flight each, their acks
  tracked. After ``kill -9`` and a restart every acked point is stored exactly once; the devices then
  resend everything not acked (and one acked frame, as a device that missed the ack would) and in the
  end every point sent is stored exactly once.
- Uploads: a video is killed mid-``PUT``, then again mid-``PATCH`` of its resume. After each restart
  ``HEAD`` gives an offset within what was sent; the last ``PATCH`` completes it, and the video the
  admin downloads is byte for byte the one the device had.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fuzz_support import backend_args, combination_params, start_server
from tests.process import ServerProcess
from tests.support import new_imei

pytestmark = pytest.mark.slow

DEVICES = 10
POINTS_PER_FRAME = 100
#: frames a device may have sent and not yet seen acked
WINDOW = 4
BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(params=combination_params())
def server_args(request: pytest.FixtureRequest) -> Any:
    with backend_args(request.param, request) as args:
        yield args


# -- ingest --------------------------------------------------------------------------------------------

@dataclass
class Streamer:
    """A device that streams numbered frames of points and remembers what was acked."""

    imei: str
    token: str
    frames: dict[int, list[str]] = field(default_factory=dict)
    acked: int = 0
    next_seq: int = 1

    def frame(self, seq: int) -> str:
        if seq not in self.frames:
            first = (seq - 1) * POINTS_PER_FRAME
            self.frames[seq] = [(BASE + dt.timedelta(seconds=first + i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                                for i in range(POINTS_PER_FRAME)]
        return json.dumps({"type": "locations", "seq": seq, "points": [
            {"ts": ts, "lat": 47.0 + i * 1e-5, "lon": 8.0} for i, ts in enumerate(self.frames[seq])]})

    def url(self, srv: ServerProcess) -> str:
        return f"{srv.ws_url}/api/v1/device/ws"

    async def stream(self, srv: ServerProcess) -> None:
        """Send frames as fast as acks come back (at most WINDOW unacked), until the server goes away."""
        try:
            async with connect(self.url(srv), additional_headers={"Authorization": f"Bearer {self.token}"},
                               open_timeout=30) as ws:
                window = asyncio.Semaphore(WINDOW)
                reader = asyncio.ensure_future(self._read_acks(ws, window))
                while not reader.done():
                    await window.acquire()
                    if reader.done():
                        break
                    # counted as sent before the send: a send cut off by the kill may still have
                    # reached the server (it is resent like any frame without an ack)
                    seq, self.next_seq = self.next_seq, self.next_seq + 1
                    await ws.send(self.frame(seq))
                await reader  # its own failure (anything but an ack) fails the test
        except (ConnectionClosed, OSError):
            pass  # killed

    async def _read_acks(self, ws: Any, window: asyncio.Semaphore) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                assert msg["type"] == "ack", msg
                for _ in range(msg["seq"] - self.acked):
                    window.release()
                self.acked = max(self.acked, msg["seq"])
        finally:
            window.release()  # wake the sender: the session is over

    async def resend(self, srv: ServerProcess) -> None:
        """Reconnect and send every frame not acked, and the last acked one again; wait for the ack."""
        last = self.next_seq - 1  # a frame counts as sent from before its send (see stream)
        async with connect(self.url(srv), additional_headers={"Authorization": f"Bearer {self.token}"},
                           open_timeout=30) as ws:
            for seq in range(max(1, self.acked), last + 1):
                await ws.send(self.frame(seq))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if msg["type"] == "ack" and msg["seq"] == last:
                    self.acked = last
                    return


async def stored_times(srv: ServerProcess, admin: dict[str, str], imei: str) -> collections.Counter[str]:
    """How many times each ts is stored for ``imei``, over every page of its track."""
    out: collections.Counter[str] = collections.Counter()
    cursor = None
    async with httpx.AsyncClient(base_url=srv.url, headers=admin, timeout=60) as http:
        while True:
            r = await http.get(f"/api/v1/admin/devices/{imei}/locations",
                               params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            r.raise_for_status()
            out.update(p["ts"] for p in r.json()["items"])
            cursor = r.json()["next_cursor"]
            if not cursor:
                return out


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


async def test_kill_9_under_ingest_loses_no_acked_point_and_stores_each_once(tmp_path: Path,
                                                                            server_args: list[str]) -> None:
    srv = await asyncio.to_thread(start_server, tmp_path / "data", server_args)
    try:
        registered = await asyncio.to_thread(srv.register, [new_imei() for _ in range(DEVICES)])
        devices = [Streamer(d["imei"], d["token"]) for d in registered]
        streams = [asyncio.ensure_future(d.stream(srv)) for d in devices]
        # killed while every device streams: some frames acked, others in flight
        await wait_until(lambda: all(d.acked >= 3 for d in devices) or any(s.done() for s in streams), 120,
                         "the devices got no acks")
        assert not any(s.done() for s in streams), [s.exception() for s in streams if s.done()]
        await asyncio.to_thread(srv.kill)
        await asyncio.wait_for(asyncio.gather(*streams), 30)
        assert any(d.next_seq - 1 > d.acked for d in devices), "nothing was in flight at the kill"
        acked_at_kill = {d.imei: d.acked for d in devices}

        await asyncio.to_thread(srv.start, 60)
        admin = {"Authorization": f"Bearer {await asyncio.to_thread(srv.admin_token)}"}
        for d in devices:
            stored = await stored_times(srv, admin, d.imei)
            acked_points = [ts for seq in range(1, acked_at_kill[d.imei] + 1) for ts in d.frames[seq]]
            missing = [ts for ts in acked_points if stored[ts] == 0]
            assert not missing, f"{d.imei}: {len(missing)} acked points lost, first {missing[:3]}"
            assert max(stored.values()) == 1, f"{d.imei}: stored twice: {[t for t, n in stored.items() if n > 1][:3]}"

        await asyncio.wait_for(asyncio.gather(*(d.resend(srv) for d in devices)), 120)
        for d in devices:
            stored = await stored_times(srv, admin, d.imei)
            sent = {ts for points in d.frames.values() for ts in points}
            assert set(stored) == sent and max(stored.values()) == 1, d.imei
    finally:
        code = await asyncio.to_thread(srv.stop)
    assert code == 0, srv.log_text()


# -- uploads -------------------------------------------------------------------------------------------

VIDEO = random.Random(7).randbytes(6 * 1024 * 1024)


async def _upload_until_killed(srv: ServerProcess, method: str, url: str, headers: dict[str, str], data: bytes,
                               part: Path, on_disk: int) -> int:
    """Send ``data`` as the body of ``method url``, SIGKILL the server once its part file holds
    ``on_disk`` bytes; returns the bytes the client had sent by then."""
    sent = 0
    killed = asyncio.Event()
    # the body starts at the upload's offset (a PATCH's Upload-Offset): hold back past 1 MiB beyond the kill
    hold_at = on_disk - int(headers.get("Upload-Offset", "0")) + 1024 * 1024

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for i in range(0, len(data), 64 * 1024):
            if sent >= hold_at:
                await killed.wait()  # hold the rest back until the server is gone: killed mid-way
            sent += len(data[i:i + 64 * 1024])
            yield data[i:i + 64 * 1024]

    async with httpx.AsyncClient(timeout=120) as http:
        upload = asyncio.ensure_future(http.request(method, url, headers={**headers, "Content-Length": str(len(data))},
                                                    content=body()))
        await wait_until(lambda: (part.exists() and part.stat().st_size >= on_disk) or upload.done(), 120,
                         "the part file did not grow")
        assert not upload.done(), upload
        await asyncio.to_thread(srv.kill)
        sent_at_kill = sent
        killed.set()
        with pytest.raises(httpx.HTTPError):
            await asyncio.wait_for(upload, 60)
    return sent_at_kill


async def test_kill_9_mid_upload_then_resume_is_byte_exact(tmp_path: Path, server_args: list[str]) -> None:
    srv = await asyncio.to_thread(start_server, tmp_path / "data", server_args)
    try:
        [dev] = await asyncio.to_thread(srv.register, [new_imei()])
        device = {"Authorization": f"Bearer {dev['token']}"}
        url = f"{srv.url}/api/v1/device/videos/crash.mp4"
        part = tmp_path / "data" / "videos" / ".parts" / dev["imei"] / "crash.mp4.part"
        digest = hashlib.sha256(VIDEO).hexdigest()

        # 1. killed mid-PUT
        sent = await _upload_until_killed(srv, "PUT", url, {**device, "X-Content-SHA256": digest}, VIDEO, part,
                                          2 * 1024 * 1024)
        await asyncio.to_thread(srv.start, 60)
        offset = await _head(srv, url, device)
        assert 0 < offset <= sent, (offset, sent)

        # 2. its resume killed mid-PATCH
        rest = VIDEO[offset:]
        sent = await _upload_until_killed(srv, "PATCH", url, {
            **device, "Upload-Offset": str(offset), "Upload-Complete": "?1", "X-Content-SHA256": digest,
            "Content-Type": "application/offset+octet-stream"}, rest, part, offset + 1024 * 1024)
        await asyncio.to_thread(srv.start, 60)
        resumed = await _head(srv, url, device)
        assert offset < resumed <= offset + sent, (offset, resumed, sent)

        # 3. the last PATCH completes it
        rest = VIDEO[resumed:]
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as http:
            r = await http.patch(url, content=rest, headers={
                **device, "Upload-Offset": str(resumed), "Upload-Complete": "?1", "X-Content-SHA256": digest,
                "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 201, r.text
            assert r.json() == {"name": "crash.mp4", "size": len(VIDEO), "sha256": digest}
            admin = {"Authorization": f"Bearer {await asyncio.to_thread(srv.admin_token)}"}
            got = await http.get(f"/api/v1/admin/devices/{dev['imei']}/videos/crash.mp4", headers=admin)
            assert got.status_code == 200 and got.content == VIDEO
    finally:
        code = await asyncio.to_thread(srv.stop)
    assert code == 0, srv.log_text()


async def _head(srv: ServerProcess, url: str, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.head(url, headers=headers)
    assert r.status_code == 200 and "Upload-Complete" not in r.headers, (r.status_code, r.headers)
    return int(r.headers["Upload-Offset"])
