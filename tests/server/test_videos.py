"""Videos end to end: streamed PUT, resume with HEAD + PATCH, limits, names, admin listing and ranged
downloads. A real server, real HTTP (httpx, and raw sockets where a connection must drop mid-body)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import AsyncIterator

import httpx
import psutil
import pytest

from tests.support import Device, RunningServer, ServerFactory

DEVICE_URL = "/api/v1/device/videos/{}"


def auth(dev: Device) -> dict[str, str]:
    return {"Authorization": f"Bearer {dev.token}"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def video_root(server: RunningServer) -> Path:
    return Path(os.path.realpath(server.settings.resolved_video_dir))


def files_under(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


async def put(server: RunningServer, dev: Device, name: str, data: bytes, **headers: str) -> httpx.Response:
    return await server.http.put(DEVICE_URL.format(name), content=data, headers={**auth(dev), **headers})


async def chunks(data: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
        await asyncio.sleep(0)


async def admin_get(server: RunningServer, imei: str, name: str, **headers: str) -> httpx.Response:
    return await server.http.get(f"/api/v1/admin/devices/{imei}/videos/{name}",
                                 headers={**await server.admin_headers(), **headers})


async def listing(server: RunningServer, imei: str, **params: object) -> httpx.Response:
    return await server.http.get(f"/api/v1/admin/devices/{imei}/videos", params=params,
                                 headers=await server.admin_headers())


async def wait_settled(server: RunningServer, imei: str, name: str, timeout: float = 5.0) -> None:
    """Wait until the server noticed a dropped upload connection and put the part away."""
    deadline = time.monotonic() + timeout
    while server.probe.upload_busy(imei, name):
        assert time.monotonic() < deadline, "the dropped upload was not put away"
        await asyncio.sleep(0.01)


async def start_raw_upload(server: RunningServer, dev: Device, name: str, method: str, total: int,
                           first: bytes, **headers: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Begin an upload that announces ``total`` bytes on a raw socket and send only ``first``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [f"{method} {DEVICE_URL.format(name)} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             f"Authorization: Bearer {dev.token}", f"Content-Length: {total}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + first)
    await writer.drain()
    return reader, writer


async def wait_received(server: RunningServer, imei: str, name: str, size: int, timeout: float = 5.0) -> None:
    """Wait until the running upload of (imei, name) has taken ``size`` bytes from the network."""
    deadline = time.monotonic() + timeout
    while (w := server.probe.upload_writer(imei, name)) is None or w.size < size:
        assert time.monotonic() < deadline, "the server did not receive the bytes in time"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------


async def test_put_roundtrip_exact_bytes_on_disk_and_in_download(server: RunningServer) -> None:
    dev = await server.register()
    data = os.urandom(300_001)
    events: list[dict] = []
    unsubscribe = server.probe.subscribe(events.append)
    try:
        r = await put(server, dev, "clip-1.mp4", data, **{"X-Content-SHA256": sha(data)})
    finally:
        unsubscribe()
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "clip-1.mp4", "size": len(data), "sha256": sha(data)}

    root = video_root(server)
    assert (root / dev.imei / "clip-1.mp4").read_bytes() == data
    assert files_under(root) == {f"{dev.imei}/clip-1.mp4"}  # no part left behind

    r = await admin_get(server, dev.imei, "clip-1.mp4")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"] == f'"{sha(data)}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Type"] == "video/mp4"

    h = await server.http.head(DEVICE_URL.format("clip-1.mp4"), headers=auth(dev))
    assert h.status_code == 200
    assert h.headers["Upload-Offset"] == str(len(data)) and h.headers["Upload-Complete"] == "?1"

    [video_event] = [e for e in events if e["type"] == "video"]
    assert video_event["imei"] == dev.imei
    assert video_event["video"]["sha256"] == sha(data) and video_event["video"]["complete"] is True

    metrics = (await server.http.get("/metrics")).text
    assert 'truckx_uploads_total{result="created"} 1.0' in metrics


async def test_put_without_checksum_and_empty_file(server: RunningServer) -> None:
    dev = await server.register()
    r = await put(server, dev, "empty.bin", b"")
    assert r.status_code == 201 and r.json()["size"] == 0 and r.json()["sha256"] == sha(b"")
    r = await admin_get(server, dev.imei, "empty.bin")
    assert r.status_code == 200 and r.content == b""


async def test_checksum_mismatch_is_400_and_nothing_is_kept(server: RunningServer) -> None:
    dev = await server.register()
    data = os.urandom(50_000)
    r = await put(server, dev, "bad.mp4", data, **{"X-Content-SHA256": sha(b"something else")})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_argument"
    assert files_under(video_root(server)) == set()
    assert (await admin_get(server, dev.imei, "bad.mp4")).status_code == 404
    h = await server.http.head(DEVICE_URL.format("bad.mp4"), headers=auth(dev))
    assert h.headers["Upload-Offset"] == "0" and "Upload-Complete" not in h.headers
    assert (await listing(server, dev.imei)).json()["items"] == []

    r = await put(server, dev, "bad.mp4", data, **{"X-Content-SHA256": "not-hex"})
    assert r.status_code == 400


async def test_same_content_again_is_200_different_content_is_409(server: RunningServer) -> None:
    dev = await server.register()
    first, other = os.urandom(20_000), os.urandom(20_000)
    assert (await put(server, dev, "dup.mp4", first)).status_code == 201
    r = await put(server, dev, "dup.mp4", first, **{"X-Content-SHA256": sha(first)})
    assert r.status_code == 200
    assert r.json() == {"name": "dup.mp4", "size": len(first), "sha256": sha(first)}
    r = await put(server, dev, "dup.mp4", other)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    r = await put(server, dev, "dup.mp4", first[:-1])  # a prefix is different content too
    assert r.status_code == 409
    root = video_root(server)
    assert (root / dev.imei / "dup.mp4").read_bytes() == first
    assert files_under(root) == {f"{dev.imei}/dup.mp4"}


async def test_over_the_limit_by_content_length_is_413(server_factory: ServerFactory) -> None:
    server = await server_factory(max_video_bytes=10_000)
    dev = await server.register()
    r = await put(server, dev, "big.mp4", os.urandom(10_001))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert files_under(video_root(server)) == set()
    # a body well past the limit gets the same clean answer (its rest is read and dropped, not kept)
    r = await put(server, dev, "big.mp4", os.urandom(3_000_000))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert files_under(video_root(server)) == set()
    # exactly at the limit is fine
    assert (await put(server, dev, "ok.mp4", os.urandom(10_000))).status_code == 201


async def test_over_the_limit_while_streaming_is_413(server_factory: ServerFactory) -> None:
    server = await server_factory(max_video_bytes=100_000)
    dev = await server.register()
    data = os.urandom(3_000_000)
    # an async generator body goes out chunked, without Content-Length: only counting can refuse it
    r = await server.http.put(DEVICE_URL.format("stream.mp4"), content=chunks(data), headers=auth(dev))
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    assert files_under(video_root(server)) == set()
    h = await server.http.head(DEVICE_URL.format("stream.mp4"), headers=auth(dev))
    assert h.headers["Upload-Offset"] == "0"
    # the same file within the limit, chunked, goes through
    r = await server.http.put(DEVICE_URL.format("stream.mp4"), content=chunks(data[:100_000]), headers=auth(dev))
    assert r.status_code == 201
    assert (video_root(server) / dev.imei / "stream.mp4").read_bytes() == data[:100_000]

    # a PATCH whose offset plus body passes the limit: refused by Content-Length, and while streaming
    r = await server.http.patch(DEVICE_URL.format("p.mp4"), content=os.urandom(100_001),
                                headers={**auth(dev), "Upload-Offset": "0"})
    assert r.status_code == 413
    r = await server.http.patch(DEVICE_URL.format("p.mp4"), content=data[:60_000],
                                headers={**auth(dev), "Upload-Offset": "0"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "60000"
    r = await server.http.patch(DEVICE_URL.format("p.mp4"), content=chunks(data[60_000:120_000]),
                                headers={**auth(dev), "Upload-Offset": "60000", "Upload-Complete": "?1"})
    assert r.status_code == 413
    assert files_under(video_root(server)) == {f"{dev.imei}/stream.mp4"}
    metrics = (await server.http.get("/metrics")).text
    assert 'truckx_uploads_total{result="too_large"} 3.0' in metrics


async def test_dropped_upload_resumes_from_its_durable_offset(server: RunningServer) -> None:
    dev = await server.register()
    data = os.urandom(1_500_000)
    name = "crash-0001.mp4"
    sent = 600_000
    _reader, writer = await start_raw_upload(server, dev, name, "PUT", len(data), data[:sent],
                                             **{"X-Content-SHA256": sha(data)})
    await wait_received(server, dev.imei, name, sent)
    writer.close()  # the connection drops mid-body
    await writer.wait_closed()
    await wait_settled(server, dev.imei, name)

    h = await server.http.head(DEVICE_URL.format(name), headers=auth(dev))
    assert h.status_code == 200
    assert h.headers["Upload-Offset"] == str(sent) and "Upload-Complete" not in h.headers
    # the partial is never visible as a video, but the index knows it is incomplete
    assert (await admin_get(server, dev.imei, name)).status_code == 404
    assert not (video_root(server) / dev.imei / name).exists()
    [item] = (await listing(server, dev.imei)).json()["items"]
    assert item["name"] == name and item["complete"] is False and item["size"] == sent

    # wrong offsets are refused and change nothing
    for wrong in (0, sent - 1, sent + 1):
        r = await server.http.patch(DEVICE_URL.format(name), content=data[wrong:],
                                    headers={**auth(dev), "Upload-Offset": str(wrong), "Upload-Complete": "?1"})
        assert r.status_code == 409, wrong
        assert r.json()["error"]["offset"] == sent

    # an intermediate part without Upload-Complete, then the final part (streamed) with the checksum
    mid = 1_000_000
    r = await server.http.patch(DEVICE_URL.format(name), content=data[sent:mid],
                                headers={**auth(dev), "Upload-Offset": str(sent)})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(mid)
    r = await server.http.patch(DEVICE_URL.format(name), content=chunks(data[mid:]),
                                headers={**auth(dev), "Upload-Offset": str(mid), "Upload-Complete": "?1",
                                         "X-Content-SHA256": sha(data)})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": name, "size": len(data), "sha256": sha(data)}

    r = await admin_get(server, dev.imei, name)
    assert r.status_code == 200 and sha(r.content) == sha(data)
    assert files_under(video_root(server)) == {f"{dev.imei}/{name}"}
    [item] = (await listing(server, dev.imei)).json()["items"]
    assert item["complete"] is True and item["sha256"] == sha(data)

    # once complete, HEAD says so and further PATCHes are refused
    h = await server.http.head(DEVICE_URL.format(name), headers=auth(dev))
    assert h.headers["Upload-Complete"] == "?1" and h.headers["Upload-Offset"] == str(len(data))
    r = await server.http.patch(DEVICE_URL.format(name), content=b"x",
                                headers={**auth(dev), "Upload-Offset": str(len(data))})
    assert r.status_code == 409


async def test_dropped_patch_keeps_what_arrived_and_a_bad_final_checksum_keeps_nothing(server: RunningServer) -> None:
    dev = await server.register()
    data = os.urandom(400_000)
    name = "twice.mp4"
    r = await server.http.patch(DEVICE_URL.format(name), content=data[:100_000],
                                headers={**auth(dev), "Upload-Offset": "0"})
    assert r.status_code == 204
    _reader, writer = await start_raw_upload(server, dev, name, "PATCH", 300_000, data[100_000:250_000],
                                             **{"Upload-Offset": "100000", "Upload-Complete": "?1"})
    await wait_received(server, dev.imei, name, 250_000)
    writer.close()
    await writer.wait_closed()
    await wait_settled(server, dev.imei, name)
    h = await server.http.head(DEVICE_URL.format(name), headers=auth(dev))
    assert h.headers["Upload-Offset"] == "250000"

    r = await server.http.patch(DEVICE_URL.format(name), content=data[250_000:],
                                headers={**auth(dev), "Upload-Offset": "250000", "Upload-Complete": "?1",
                                         "X-Content-SHA256": sha(b"not this")})
    assert r.status_code == 400
    assert files_under(video_root(server)) == set()
    h = await server.http.head(DEVICE_URL.format(name), headers=auth(dev))
    assert h.headers["Upload-Offset"] == "0"
    assert (await listing(server, dev.imei)).json()["items"] == []


async def test_put_over_a_pending_part_starts_over(server: RunningServer) -> None:
    dev = await server.register()
    r = await server.http.patch(DEVICE_URL.format("again.mp4"), content=b"old prefix",
                                headers={**auth(dev), "Upload-Offset": "0"})
    assert r.status_code == 204
    data = os.urandom(5000)
    r = await put(server, dev, "again.mp4", data)
    assert r.status_code == 201 and r.json()["sha256"] == sha(data)
    assert (video_root(server) / dev.imei / "again.mp4").read_bytes() == data


async def test_a_newer_request_takes_over_an_upload_whose_connection_hangs(server: RunningServer) -> None:
    """A truck's old connection may be half-open (never closed) when it comes back to resume: its HEAD
    cuts the old request off at its durable offset instead of being refused."""
    dev = await server.register()
    data = os.urandom(200_000)
    reader, writer = await start_raw_upload(server, dev, "busy.mp4", "PUT", len(data), data[:50_000])
    await wait_received(server, dev.imei, "busy.mp4", 50_000)
    r = await server.http.head(DEVICE_URL.format("busy.mp4"), headers=auth(dev))
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "50000"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the old request was cut off
    writer.close()
    r = await server.http.patch(DEVICE_URL.format("busy.mp4"), content=data[50_000:],
                                headers={**auth(dev), "Upload-Offset": "50000", "Upload-Complete": "?1",
                                         "X-Content-SHA256": sha(data)})
    assert r.status_code == 201, r.text
    assert (video_root(server) / dev.imei / "busy.mp4").read_bytes() == data


async def test_a_new_put_supersedes_a_hanging_one_and_other_files_are_independent(server: RunningServer) -> None:
    dev, other = await server.register(), await server.register()
    data = os.urandom(200_000)
    reader, writer = await start_raw_upload(server, dev, "busy.mp4", "PUT", len(data), data[:50_000])
    await wait_received(server, dev.imei, "busy.mp4", 50_000)
    # another name, and the same name of another device, are not touched
    assert (await put(server, dev, "free.mp4", data)).status_code == 201
    assert (await put(server, other, "busy.mp4", data)).status_code == 201
    assert server.probe.upload_busy(dev.imei, "busy.mp4")
    # a new PUT of the same file starts over and wins
    r = await put(server, dev, "busy.mp4", data)
    assert r.status_code == 201 and r.json()["size"] == len(data)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert (video_root(server) / dev.imei / "busy.mp4").read_bytes() == data


async def test_path_traversal_names_are_refused_and_nothing_is_written_outside_the_root(
        server: RunningServer, tmp_path: Path) -> None:
    dev = await server.register()
    root = video_root(server)
    outside_before = {p for p in files_under(tmp_path) if not p.startswith("data/")}
    data_before = {p for p in files_under(tmp_path / "data") if not (tmp_path / "data" / p).is_relative_to(root)}
    bad_names = ["..", "%2e%2e", "%2E%2E", "a%2Fb", "..%2F..%2Fescape", "%2e%2e%2f%2e%2e%2fescape", ".hidden",
                 ".parts", "x" * 129, "a b", "%00x", "-dash", "_under", "a..b", "%2Fetc%2Fpasswd"]
    for name in bad_names:
        r = await put(server, dev, name, b"payload")
        assert r.status_code in (400, 404), (name, r.status_code)
        r = await server.http.patch(DEVICE_URL.format(name), content=b"payload",
                                    headers={**auth(dev), "Upload-Offset": "0"})
        assert r.status_code in (400, 404), (name, r.status_code)
        r = await server.http.head(DEVICE_URL.format(name), headers=auth(dev))
        assert r.status_code in (400, 404), (name, r.status_code)
        r = await admin_get(server, dev.imei, name)
        # (httpx normalises a literal ".." away, so that request may reach another, harmless route)
        assert r.status_code in (400, 404) or "/videos/" not in r.request.url.path, (name, r.status_code)
    r = await server.http.put("/api/v1/device/videos/a/b", content=b"payload", headers=auth(dev))
    assert r.status_code == 404
    # and a literal, unnormalised ".." on the wire (httpx would normalise it away)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for target in ("/api/v1/device/videos/..", "/api/v1/device/videos/../../../escape",
                   "/api/v1/device/videos/%2e%2e%2f%2e%2e%2fescape"):
        writer.write(f"PUT {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {dev.token}\r\n"
                     f"Content-Length: 7\r\n\r\npayload".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.split()[1] in (b"400", b"404"), (target, status)
        break  # an error response closes the connection; one literal request per socket
    writer.close()
    await writer.wait_closed()
    r = await put(server, dev, "x" * 128, b"the longest name is fine")
    assert r.status_code == 201

    assert files_under(root) == {f"{dev.imei}/{'x' * 128}"}
    assert {p for p in files_under(tmp_path) if not p.startswith("data/")} == outside_before
    data_after = {p for p in files_under(tmp_path / "data") if not (tmp_path / "data" / p).is_relative_to(root)}
    assert {p for p in data_after - data_before if not p.endswith(("-wal", "-shm", "-journal"))} == set()


async def test_devices_only_write_their_own_and_cannot_use_the_admin_path(server: RunningServer) -> None:
    a, b = await server.register(), await server.register()
    data_a, data_b = os.urandom(10_000), os.urandom(10_000)
    assert (await put(server, a, "same-name.mp4", data_a)).status_code == 201
    assert (await put(server, b, "same-name.mp4", data_b)).status_code == 201  # its own namespace
    root = video_root(server)
    assert (root / a.imei / "same-name.mp4").read_bytes() == data_a
    assert (root / b.imei / "same-name.mp4").read_bytes() == data_b

    for url in (f"/api/v1/admin/devices/{a.imei}/videos/same-name.mp4", f"/api/v1/admin/devices/{a.imei}/videos"):
        r = await server.http.get(url, headers=auth(b))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert (await server.http.get(url)).status_code == 401
    # an admin token cannot upload as a device
    r = await server.http.put(DEVICE_URL.format("admin.mp4"), content=b"x", headers=await server.admin_headers())
    assert r.status_code == 403
    assert files_under(root) == {f"{a.imei}/same-name.mp4", f"{b.imei}/same-name.mp4"}


async def test_a_disabled_device_cannot_upload(server: RunningServer) -> None:
    dev = await server.register()
    await server.probe.set_enabled(dev.imei, False)
    r = await put(server, dev, "late.mp4", b"data")
    assert r.status_code == 403
    assert files_under(video_root(server)) == set()


async def test_range_requests(server: RunningServer) -> None:
    dev = await server.register()
    data = os.urandom(1_000_000)
    assert (await put(server, dev, "r.mp4", data)).status_code == 201
    size, etag = len(data), f'"{sha(data)}"'

    r = await admin_get(server, dev.imei, "r.mp4", Range="bytes=100-199")
    assert r.status_code == 206
    assert r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert r.headers["Content-Length"] == "100"
    assert r.headers["ETag"] == etag and r.headers["Accept-Ranges"] == "bytes"

    r = await admin_get(server, dev.imei, "r.mp4", Range=f"bytes={size - 10}-")
    assert r.status_code == 206 and r.content == data[-10:]
    assert r.headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"
    r = await admin_get(server, dev.imei, "r.mp4", Range="bytes=-300000")
    assert r.status_code == 206 and r.content == data[-300_000:]
    r = await admin_get(server, dev.imei, "r.mp4", Range=f"bytes=999000-{size * 2}")  # end clamped
    assert r.status_code == 206 and r.content == data[999_000:]

    for unsatisfiable in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        r = await admin_get(server, dev.imei, "r.mp4", Range=unsatisfiable)
        assert r.status_code == 416, unsatisfiable
        assert r.headers["Content-Range"] == f"bytes */{size}"
        assert r.json()["error"]["code"] == "range_not_satisfiable"

    for ignored in ("items=0-5", "bytes=5-1", "bytes=0-1,5-9", "bytes=abc"):  # RFC 9110: serve it all
        r = await admin_get(server, dev.imei, "r.mp4", Range=ignored)
        assert r.status_code == 200 and r.content == data, ignored

    r = await admin_get(server, dev.imei, "r.mp4", **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    r = await admin_get(server, dev.imei, "r.mp4", Range="bytes=0-9", **{"If-Range": etag})
    assert r.status_code == 206 and r.content == data[:10]
    r = await admin_get(server, dev.imei, "r.mp4", Range="bytes=0-9", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data

    r = await server.http.head(f"/api/v1/admin/devices/{dev.imei}/videos/r.mp4", headers=await server.admin_headers())
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == str(size) and r.headers["ETag"] == etag

    assert (await admin_get(server, dev.imei, "missing.mp4")).status_code == 404
    assert (await admin_get(server, "123", "r.mp4")).status_code == 400


async def test_listing_walks_every_item_once_with_alarm_ids(server: RunningServer) -> None:
    dev = await server.register()
    names = [f"v{i:02d}.mp4" for i in range(11)]
    for name in reversed(names):
        assert (await put(server, dev, name, name.encode())).status_code == 201
    r = await server.http.post("/api/v1/device/alarms", headers=auth(dev), json={
        "type": "crash", "ts": "2026-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0, "files": ["v03.mp4", "v07.mp4"]})
    assert r.status_code == 201, r.text
    alarm_id = r.json()["id"]
    other = await server.register()
    assert (await put(server, other, "v00.mp4", b"other")).status_code == 201

    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        r = await listing(server, dev.imei, **params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 4
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [v["name"] for v in seen] == names
    by_name = {v["name"]: v for v in seen}
    assert by_name["v03.mp4"]["alarm_ids"] == [alarm_id] and by_name["v07.mp4"]["alarm_ids"] == [alarm_id]
    assert by_name["v00.mp4"]["alarm_ids"] == []
    v5 = by_name["v05.mp4"]
    assert v5["size"] == 7 and v5["sha256"] == sha(b"v05.mp4") and v5["complete"] is True
    assert v5["uploaded_at"].endswith("Z")

    # the alarm sees its files as arrived
    alarm = await server.probe.sql.alarms.get(alarm_id)
    assert alarm["files"] == [{"name": "v03.mp4", "arrived": True, "thumbnail": False},
                              {"name": "v07.mp4", "arrived": True, "thumbnail": False}]

    assert (await listing(server, dev.imei)).json()["next_cursor"] is None  # default limit 100
    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "!!!"}, {"cursor": "bm90LWEtY3Vyc29y"}):
        r = await listing(server, dev.imei, **bad)
        assert r.status_code == 400, bad
    assert (await listing(server, "123456789012345")).status_code == 400  # bad Luhn digit
    from tests.support import new_imei
    assert (await listing(server, new_imei())).status_code == 404


@pytest.mark.slow
async def test_memory_stays_flat_for_a_64_mib_upload_and_download(server: RunningServer) -> None:
    dev = await server.register()
    size, block = 64 * 1024 * 1024, os.urandom(1024 * 1024)
    expected = hashlib.sha256()
    for _ in range(size // len(block)):
        expected.update(block)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    # warm up every code path once, so that the baseline includes the thread pools and buffers
    assert (await put(server, dev, "warm.mp4", block * 2)).status_code == 201
    async with server.http.stream("GET", f"/api/v1/admin/devices/{dev.imei}/videos/warm.mp4",
                                  headers=await server.admin_headers()) as r:
        async for _ in r.aiter_bytes():
            pass

    proc = psutil.Process()
    baseline = proc.memory_info().rss
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        started = time.perf_counter()
        r = await server.http.put(DEVICE_URL.format("big.mp4"), content=body(),
                                  headers={**auth(dev), "Content-Length": str(size),
                                           "X-Content-SHA256": expected.hexdigest()}, timeout=120)
        upload_s = time.perf_counter() - started
        assert r.status_code == 201, r.text
        got = hashlib.sha256()
        started = time.perf_counter()
        async with server.http.stream("GET", f"/api/v1/admin/devices/{dev.imei}/videos/big.mp4",
                                      headers=await server.admin_headers(), timeout=120) as r:
            assert r.status_code == 200
            async for chunk in r.aiter_bytes():
                got.update(chunk)
        download_s = time.perf_counter() - started
    finally:
        stop.set()
        sampler.join()
    assert got.hexdigest() == expected.hexdigest()
    growth = peak - baseline
    print(f"\n64 MiB: upload {upload_s:.2f}s ({64 / upload_s:.0f} MiB/s), download {download_s:.2f}s "
          f"({64 / download_s:.0f} MiB/s), peak RSS growth {growth / 2**20:.1f} MiB")
    assert growth < 32 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"


# -- PartWriter: hashing and writing off the event loop ------------------------------------------


async def test_part_writer_keeps_order_and_bounds_what_it_holds(tmp_path: Path) -> None:
    from tests.support import new_imei
    from truckx_server.storage import videos_fs

    store = videos_fs.FsVideoStore(tmp_path)
    imei, name, piece = new_imei(), "lanes.mp4", 300_000
    data = os.urandom(9 * 1024 * 1024 + 12_345)
    writer = await store.open_part(store.claim(imei, name), resume=False)
    held = 0
    for i in range(0, len(data), piece):
        waiting = writer.write(data[i:i + piece])
        held = max(held, writer._hashing.queued, writer._writing.queued)
        if waiting is not None:
            await waiting
    assert await writer.close() == len(data)
    assert writer.hexdigest() == sha(data)
    assert store.part_path(imei, name).read_bytes() == data
    assert held <= videos_fs.MAX_QUEUED + videos_fs.WRITE_BUFFER + piece

    # a resume hashes the part again (in a thread) and appends in order
    writer.claim.release()
    writer = await store.open_part(store.claim(imei, name), resume=True)
    assert writer.size == len(data)
    tail = os.urandom(3 * 1024 * 1024)
    for i in range(0, len(tail), piece):
        if (waiting := writer.write(tail[i:i + piece])) is not None:
            await waiting
    assert await writer.close() == len(data) + len(tail)
    assert writer.hexdigest() == sha(data + tail)
    assert store.part_path(imei, name).read_bytes() == data + tail


async def test_part_writer_closed_while_bytes_are_in_flight_keeps_every_accepted_byte(tmp_path: Path) -> None:
    """A dropped connection closes the writer while buffers are still being hashed and written."""
    from tests.support import new_imei
    from truckx_server.errors import Conflict
    from truckx_server.storage import videos_fs

    store = videos_fs.FsVideoStore(tmp_path)
    imei, name = new_imei(), "drop.mp4"
    data = os.urandom(6 * 1024 * 1024 + 7)
    writer = await store.open_part(store.claim(imei, name), resume=False)
    waiting = []  # awaited only together with the closes: as many buffers in flight as possible
    for i in range(0, len(data), 1024 * 1024):
        if (w := writer.write(data[i:i + 1024 * 1024])) is not None:
            waiting.append(w)
    sizes = await asyncio.gather(writer.close(), writer.close(), *waiting)
    assert sizes[:2] == [len(data), len(data)]
    assert store.part_path(imei, name).read_bytes() == data
    assert writer.hexdigest() == sha(data)
    with pytest.raises(Conflict):
        writer.write(b"late")


async def test_part_writer_reports_a_failed_write(tmp_path: Path) -> None:
    from tests.support import new_imei
    from truckx_server.storage import videos_fs

    class FullDisk:
        """The part file, refusing every write past 2 MiB."""

        def __init__(self, file) -> None:  # noqa: ANN001
            self.file, self.written = file, 0

        def write(self, chunk: bytes) -> int:
            if self.written + len(chunk) > 2 * 1024 * 1024:
                raise OSError(28, "No space left on device")
            self.written += len(chunk)
            return self.file.write(chunk)

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self.file, name)

    store = videos_fs.FsVideoStore(tmp_path)
    imei, name = new_imei(), "full.mp4"
    writer = await store.open_part(store.claim(imei, name), resume=False)
    writer._file = FullDisk(writer._file)  # type: ignore[assignment]
    block = os.urandom(1024 * 1024)
    with pytest.raises(OSError, match="No space"):
        for _ in range(64):
            if (waiting := writer.write(block)) is not None:
                await waiting
            await asyncio.sleep(0.001)
    with pytest.raises(OSError, match="No space"):
        await writer.close()  # the durable offset is not known: the caller must not claim one
    assert writer.state == "closed"
    assert await writer.close(durable=False) == writer.size  # idempotent, and no error when discarding
