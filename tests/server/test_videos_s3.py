"""The S3 video store (``--video-url s3://bucket/prefix``) in one process, against moto's S3 server: small
and multipart uploads, the same answers as the directory store (duplicate 200, different content 409,
checksum mismatch 400 with nothing kept), a paused multipart upload resumed from its durable offset (the
completed parts), Range downloads, and abandoned uploads aborted."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tests.services import S3_ENV, MotoServer, s3_client
from tests.clips import h264_mp4
from tests.support import RunningServer, ServerFactory, wait_for_thumbnail

pytestmark = [pytest.mark.slow]

PART = 5 * 1024 * 1024


@pytest.fixture
async def s3_server(server_factory: ServerFactory, moto_server: MotoServer, s3_bucket: str,
                    monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL_S3": moto_server.url}.items():
        monkeypatch.setenv(key, value)
    return await server_factory(video_url=f"s3://{s3_bucket}/v", s3_part_size=PART, upload_abandon_after_s=1)


def uploads_in(moto: MotoServer, bucket: str) -> list[dict]:
    return s3_client(moto.url).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


async def test_uploads_downloads_and_answers(s3_server: RunningServer, moto_server: MotoServer,
                                             s3_bucket: str) -> None:
    http = s3_server.http
    dev = await s3_server.register()
    dh = {"Authorization": f"Bearer {dev.token}"}
    admin = await s3_server.admin_headers()
    base = f"/api/v1/admin/devices/{dev.imei}/videos"

    small = os.urandom(100_000)
    r = await http.put("/api/v1/device/videos/small.mp4", content=small, headers=dh)
    assert r.status_code == 201 and r.json()["sha256"] == hashlib.sha256(small).hexdigest()
    obj = await asyncio.to_thread(s3_client(moto_server.url).get_object, Bucket=s3_bucket, Key=f"v/{dev.imei}/small.mp4")
    assert obj["Body"].read() == small
    assert (await http.put("/api/v1/device/videos/small.mp4", content=small, headers=dh)).status_code == 200
    assert (await http.put("/api/v1/device/videos/small.mp4", content=b"other", headers=dh)).status_code == 409
    assert (await http.get(f"{base}/small.mp4", headers=admin)).content == small

    big = os.urandom(2 * PART + 1234)
    digest = hashlib.sha256(big).hexdigest()
    r = await http.put("/api/v1/device/videos/bad.mp4", content=big, headers={**dh, "X-Content-SHA256": "0" * 64})
    assert r.status_code == 400
    r = await http.head("/api/v1/device/videos/bad.mp4", headers=dh)
    assert r.headers["Upload-Offset"] == "0" and (await http.get(f"{base}/bad.mp4", headers=admin)).status_code == 404
    assert await asyncio.to_thread(uploads_in, moto_server, s3_bucket) == []

    # a PATCH without Upload-Complete keeps the completed parts: the bytes after them are sent again
    r = await http.patch("/api/v1/device/videos/big.mp4", content=big[:PART + 100],
                         headers={**dh, "Upload-Offset": "0"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(PART)
    r = await http.head("/api/v1/device/videos/big.mp4", headers=dh)
    assert r.headers["Upload-Offset"] == str(PART) and "Upload-Complete" not in r.headers
    assert (await http.get(f"{base}/big.mp4", headers=admin)).status_code == 404  # not visible yet
    r = await http.patch("/api/v1/device/videos/big.mp4", content=big[PART + 100:],
                         headers={**dh, "Upload-Offset": str(PART + 100), "Upload-Complete": "?1"})
    assert r.status_code == 409 and r.json()["error"]["offset"] == PART
    r = await http.patch("/api/v1/device/videos/big.mp4", content=big[PART:],
                         headers={**dh, "Upload-Offset": str(PART), "Upload-Complete": "?1", "X-Content-SHA256": digest})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "big.mp4", "size": len(big), "sha256": digest}
    r = await http.get(f"{base}/big.mp4", headers={**admin, "Range": "bytes=-1234"})
    assert r.status_code == 206 and r.content == big[-1234:]
    assert (await http.get(f"{base}/big.mp4", headers=admin)).content == big
    r = await http.head("/api/v1/device/videos/big.mp4", headers=dh)
    assert r.headers["Upload-Offset"] == str(len(big)) and r.headers["Upload-Complete"] == "?1"
    assert await asyncio.to_thread(uploads_in, moto_server, s3_bucket) == []
    assert (await s3_server.http.get("/readyz")).json()["stores"]["videos"] == "ok"


async def test_abandoned_uploads_are_aborted(s3_server: RunningServer, moto_server: MotoServer,
                                             s3_bucket: str) -> None:
    http = s3_server.http
    dev = await s3_server.register()
    dh = {"Authorization": f"Bearer {dev.token}"}
    r = await http.patch("/api/v1/device/videos/left.mp4", content=os.urandom(PART + 10),
                         headers={**dh, "Upload-Offset": "0"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(PART)
    # and one S3 knows but SQL does not (a process died between creating and recording it)
    s3 = s3_client(moto_server.url)
    await asyncio.to_thread(s3.create_multipart_upload, Bucket=s3_bucket, Key=f"v/{dev.imei}/orphan.mp4")
    assert len(await asyncio.to_thread(uploads_in, moto_server, s3_bucket)) == 2

    aborted = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while aborted < 2 and loop.time() < deadline:  # both become older than --upload-abandon-after-s 1
        aborted += await s3_server.probe.video_housekeeping()
        await asyncio.sleep(0.2)
    assert aborted == 2
    assert await asyncio.to_thread(uploads_in, moto_server, s3_bucket) == []
    r = await http.head("/api/v1/device/videos/left.mp4", headers=dh)
    assert r.headers["Upload-Offset"] == "0"


async def test_thumbnails_and_deletes_on_s3(s3_server: RunningServer, moto_server: MotoServer,
                                            s3_bucket: str) -> None:
    """A clip in the S3 store gets its metadata and thumbnail (read through ranged GETs); deleting the
    video removes the object and its thumbnail from the bucket."""
    dev = await s3_server.register()
    admin = await s3_server.admin_headers()
    clip = h264_mp4(2.0, 320, 240)
    r = await s3_server.http.put("/api/v1/device/videos/s3clip.mp4", content=clip,
                                 headers={"Authorization": f"Bearer {dev.token}"})
    assert r.status_code == 201, r.text
    thumb = await wait_for_thumbnail(s3_server, dev.imei, "s3clip.mp4", admin)
    assert thumb[:2] == b"\xff\xd8"  # a JPEG
    keys = {o["Key"] for o in s3_client(moto_server.url).list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    assert {f"v/{dev.imei}/s3clip.mp4", f"v/.thumbs/{dev.imei}/s3clip.mp4.jpg"} <= keys
    r = await s3_server.http.delete(f"/api/v1/admin/devices/{dev.imei}/videos/s3clip.mp4", headers=admin)
    assert r.status_code == 204, r.text
    keys = {o["Key"] for o in s3_client(moto_server.url).list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    assert not any("s3clip.mp4" in k for k in keys), keys
    r = await s3_server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/s3clip.mp4/thumbnail", headers=admin)
    assert r.status_code == 404
