"""The settings of running past one process: ``--video-url file:///...`` keeps the directory store, and the
cluster flags are checked at start with one-line reasons."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support import ServerFactory
from truckx_server import config


async def test_file_video_url_is_the_directory_store(server_factory: ServerFactory, tmp_path: Path) -> None:
    root = tmp_path / "elsewhere" / "videos"
    server = await server_factory(video_url=root.as_uri())
    dev = await server.register()
    data = b"frames " * 1000
    r = await server.http.put("/api/v1/device/videos/a.mp4", content=data,
                              headers={"Authorization": f"Bearer {dev.token}"})
    assert r.status_code == 201 and r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert (root / dev.imei / "a.mp4").read_bytes() == data
    body = (await server.http.get("/readyz")).json()
    assert body["stores"] == {"sql": "ok", "locations": "ok", "videos": "ok", "bus": "ok"}


@pytest.mark.parametrize("values, message", [
    ({"video_url": "s3://Bad_Bucket/x"}, "bucket"),
    ({"video_url": "s3://bucket/../x"}, "prefix"),
    ({"video_url": "file://relative/path"}, "absolute path"),
    ({"video_url": "ftp://host/x"}, "file:///path or s3://"),
    ({"video_url": "file:///v", "video_dir": Path("/w")}, "not both"),
    ({"bus_url": "http://127.0.0.1:6379"}, "redis://"),
    ({"bus_prefix": "has space"}, "bus_prefix"),
    ({"node_id": "a/b"}, "node_id"),
    ({"workers": 0}, "workers"),
    ({"workers": 3}, "--bus-url"),
    ({"workers": 3, "bus_url": "redis://127.0.0.1:6379/0"}, "mongodb"),
    ({"s3_part_size": 1024}, "5 MiB"),
])
def test_cluster_settings_are_checked(values: dict, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("+", r"\+").replace("?", r"\?")):
        config.load(environ={}, **values)


def test_workers_with_a_bus_and_mongodb_are_accepted() -> None:
    settings = config.load(environ={"TRUCKX_WORKERS": "2", "TRUCKX_BUS_URL": "redis://127.0.0.1:6379/0",
                                    "TRUCKX_LOCATIONS_URL": "mongodb://127.0.0.1/truckx",
                                    "TRUCKX_VIDEO_URL": "s3://truckx-videos/v/x"})
    assert settings.workers == 2 and config.video_location(settings.resolved_video_url) == ("s3", "truckx-videos", "v/x")
