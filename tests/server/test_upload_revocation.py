"""Disabling a device or rotating its secret cuts its uploads in progress off at their durable offset:
the request ends without a 201, nothing becomes visible, and the part waits for a resume once the
device may upload again."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.server.test_videos import (DEVICE_URL, auth, files_under, listing, sha, start_raw_upload, video_root,
                                      wait_received, wait_settled)
from tests.support import RunningServer


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """The response on an upload's connection (status line and headers), or what came before the
    server closed it."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except ConnectionResetError:
        return b""


@pytest.mark.parametrize("change", ["disable", "rotate"])
async def test_disable_or_rotate_cuts_an_upload_in_progress(server: RunningServer, change: str) -> None:
    dev = await server.register()
    admin = await server.admin_headers()
    data = os.urandom(400_000)
    name = "cut.mp4"
    reader, writer = await start_raw_upload(server, dev, name, "PUT", len(data), data[:150_000],
                                            **{"X-Content-SHA256": sha(data)})
    await wait_received(server, dev.imei, name, 150_000)
    if change == "disable":
        r = await server.http.patch(f"/api/v1/admin/devices/{dev.imei}", json={"enabled": False}, headers=admin)
        assert r.status_code == 200
    else:
        r = await server.http.post(f"/api/v1/admin/devices/{dev.imei}/secret", headers=admin)
        assert r.status_code == 200
        dev.secret = r.json()["secret"]
    # the rest of the body goes nowhere: the server dropped the connection, no 201
    try:
        writer.write(data[150_000:])
        await writer.drain()
    except ConnectionError:
        pass
    answer = await read_answer(reader)
    assert b" 201 " not in answer.split(b"\r\n", 1)[0], answer[:200]
    writer.close()
    await wait_settled(server, dev.imei, name)
    # nothing visible
    assert not (video_root(server) / dev.imei / name).exists()
    items = (await listing(server, dev.imei)).json()["items"]
    assert [i for i in items if i["complete"]] == []
    assert (await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/{name}", headers=admin)).status_code == 404

    # allowed again: the part waits at its durable offset and the upload resumes to the end
    if change == "disable":
        r = await server.http.patch(f"/api/v1/admin/devices/{dev.imei}", json={"enabled": True}, headers=admin)
        assert r.status_code == 200
    dev.token = await server.device_login(dev)
    h = await server.http.head(DEVICE_URL.format(name), headers=auth(dev))
    offset = int(h.headers["Upload-Offset"])
    assert 0 < offset <= 400_000 and "Upload-Complete" not in h.headers
    r = await server.http.patch(DEVICE_URL.format(name), content=data[offset:],
                                headers={**auth(dev), "Upload-Offset": str(offset), "Upload-Complete": "?1",
                                         "X-Content-SHA256": sha(data)})
    assert r.status_code == 201, r.text
    assert (video_root(server) / dev.imei / name).read_bytes() == data


async def test_other_devices_uploads_are_not_touched(server: RunningServer) -> None:
    dev, other = await server.register(), await server.register()
    data = os.urandom(300_000)
    reader, writer = await start_raw_upload(server, other, "keep.mp4", "PUT", len(data), data[:100_000])
    await wait_received(server, other.imei, "keep.mp4", 100_000)
    r = await server.http.patch(f"/api/v1/admin/devices/{dev.imei}", json={"enabled": False},
                                headers=await server.admin_headers())
    assert r.status_code == 200
    writer.write(data[100_000:])
    await writer.drain()
    answer = await read_answer(reader)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]
    writer.close()
    assert files_under(video_root(server) / other.imei) == {"keep.mp4"}
