"""Fixtures for the services a cluster uses, as a plugin (``tests/conftest.py``): the machine's Redis (a key
prefix of its own per test, its keys deleted afterwards) and moto's S3 server in its own process (a
bucket per test).

A missing Redis or moto skips its tests with a one-line reason, and fails them under
``TRUCKX_TEST_REQUIRE_SERVICES=1`` (``.ci/run``), as for MariaDB (tests/backends.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.backends import free_port, unavailable

REDIS_URL = os.environ.get("TRUCKX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: the cluster tests' credentials for moto (any value works; never a real account)
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def redis_problem(url: str = REDIS_URL) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"Redis not reachable at {url} ({type(exc).__name__})"


@pytest.fixture
def redis_url() -> str:
    problem = redis_problem()
    if problem:
        unavailable(problem)
    return REDIS_URL


@pytest.fixture
def bus_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis

    prefix = "truckx-t-" + secrets.token_hex(4)
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + ":*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class MotoServer:
    """moto's S3 server (``moto_server``) in its own process on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
            try:
                httpx.get(self.url + "/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not answer within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto is not installed (pip install 'moto[server]')")
    server = MotoServer()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        server.stop()
        unavailable(f"moto_server did not start: {exc}")
    yield server
    server.stop()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"], region_name=S3_ENV["AWS_REGION"])


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A fresh bucket on moto."""
    name = "truckx-t-" + secrets.token_hex(4)
    s3_client(moto_server.url).create_bucket(Bucket=name)
    return name
