"""Uploads to S3 (moto's server) across two real processes: an upload begun on A stalls (the device's
connection went half-open), the device asks B where to resume (B has A cut its upload off through the
bus and answers the durable offset: the completed parts), sends the rest to B, and the video downloads
byte-exact, with Range, from A."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import AsyncIterator

import httpx
import pytest

from tests.cluster.conftest import Cluster
from tests.services import S3_ENV, MotoServer, s3_client
from tests.cluster.support import bearer, eventually
from tests.support import new_imei

pytestmark = [pytest.mark.slow, pytest.mark.mariadb, pytest.mark.mongo]

PART = 5 * 1024 * 1024  # S3's smallest part


def s3_args(moto: MotoServer, bucket: str) -> tuple[list[str], dict[str, str]]:
    return (["--video-url", f"s3://{bucket}/videos", "--s3-part-size", str(PART)],
            {**S3_ENV, "AWS_ENDPOINT_URL_S3": moto.url})


async def test_upload_begun_on_a_resumed_on_b_downloaded_from_a(cluster: Cluster, moto_server: MotoServer,
                                                                 s3_bucket: str) -> None:
    args, env = s3_args(moto_server, s3_bucket)
    a, b = cluster.node("a", *args, env=env), cluster.node("b", *args, env=env)
    [dev] = a.register([new_imei()])
    data = os.urandom(2 * PART + 3 * 1024 * 1024)  # two full parts and a tail
    digest = hashlib.sha256(data).hexdigest()
    s3 = s3_client(moto_server.url)
    stall = asyncio.Event()

    async def first_bytes() -> AsyncIterator[bytes]:
        sent = 0
        while sent < PART + 2 * 1024 * 1024:  # one full part and some
            yield data[sent:sent + 256 * 1024]
            sent += 256 * 1024
        await stall.wait()  # the device's link goes quiet: the connection stays open on A

    async with httpx.AsyncClient(base_url=a.url, headers=bearer(dev["token"]), timeout=60) as dev_a, \
            httpx.AsyncClient(base_url=b.url, headers=bearer(dev["token"]), timeout=60) as dev_b:
        put = asyncio.ensure_future(dev_a.put("/api/v1/device/videos/clip.mp4", content=first_bytes(),
                                              headers={"X-Content-SHA256": digest}))

        async def one_part_stored() -> bool:
            uploads = (await asyncio.to_thread(s3.list_multipart_uploads, Bucket=s3_bucket)).get("Uploads", [])
            if len(uploads) != 1:
                return False
            parts = await asyncio.to_thread(s3.list_parts, Bucket=s3_bucket, Key=uploads[0]["Key"],
                                            UploadId=uploads[0]["UploadId"])
            return len(parts.get("Parts", [])) == 1
        await eventually(one_part_stored, timeout=30, what="the first part stored in S3")

        # B: where to resume? It has A cut the stalled upload off and answers the durable offset
        head = await dev_b.head("/api/v1/device/videos/clip.mp4")
        assert head.status_code == 200 and head.headers["Upload-Offset"] == str(PART)
        assert "Upload-Complete" not in head.headers
        stall.set()  # the old request notices only when it sends again: A dropped its connection
        with pytest.raises(httpx.HTTPError):
            await asyncio.wait_for(put, 30)
        # not visible while incomplete, from either process
        async with httpx.AsyncClient(base_url=a.url, headers=bearer(a.admin_token())) as admin_a:
            r = await admin_a.get(f"/api/v1/admin/devices/{dev['imei']}/videos/clip.mp4")
            assert r.status_code == 404
        r = await dev_b.patch("/api/v1/device/videos/clip.mp4", content=data[PART:],
                              headers={"Upload-Offset": str(PART), "Upload-Complete": "?1",
                                       "X-Content-SHA256": digest})
        assert r.status_code == 201, r.text
        assert r.json() == {"name": "clip.mp4", "size": len(data), "sha256": digest}

    async with httpx.AsyncClient(base_url=a.url, headers=bearer(a.admin_token()), timeout=60) as admin_a:
        r = await admin_a.get(f"/api/v1/admin/devices/{dev['imei']}/videos/clip.mp4")
        assert r.status_code == 200 and r.content == data
        assert r.headers["X-Content-SHA256"] == digest
        r = await admin_a.get(f"/api/v1/admin/devices/{dev['imei']}/videos/clip.mp4",
                              headers={"Range": f"bytes={PART - 10}-{PART + 9}"})
        assert r.status_code == 206 and r.content == data[PART - 10:PART + 10]
        listing = (await admin_a.get(f"/api/v1/admin/devices/{dev['imei']}/videos")).json()["items"]
        assert [(v["name"], v["size"], v["sha256"], v["complete"]) for v in listing] == [
            ("clip.mp4", len(data), digest, True)]
    assert (await asyncio.to_thread(s3.list_multipart_uploads, Bucket=s3_bucket)).get("Uploads", []) == []
    head = await asyncio.to_thread(s3.head_object, Bucket=s3_bucket, Key=f"videos/{dev['imei']}/clip.mp4")
    assert head["ContentLength"] == len(data)
