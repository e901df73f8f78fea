"""Fixtures of the cluster tests: the machine's Redis (a key prefix of its own per test, its keys deleted
afterwards), moto's S3 server in its own process (a bucket per test), and :class:`Cluster`, which starts
real ``truckx-server`` processes (tests/process.py) sharing one MariaDB database, one MongoDB database
(SecantusDB), the bus and the secrets.

A missing Redis or moto skips these tests with a one-line reason, and fails them under
``TRUCKX_TEST_REQUIRE_SERVICES=1`` (``.ci/run``), as for MariaDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest

from tests.backends import free_port, unavailable
from tests.cluster.support import device_ws, event_feed
from tests.process import ServerProcess
from tests.support import WsClient

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


class Cluster:
    """Real ``truckx-server`` processes sharing the stores, the bus and the secrets."""

    def __init__(self, root: Path, sql_url: str, locations_url: str, bus_url: str, bus_prefix: str) -> None:
        self.root = root
        self.sql_url, self.locations_url = sql_url, locations_url
        self.bus_url, self.bus_prefix = bus_url, bus_prefix
        self.env = {"TRUCKX_JWT_SECRET": secrets.token_urlsafe(32),
                    "TRUCKX_DEVICE_HASH_KEY": secrets.token_urlsafe(32),
                    "TRUCKX_LOGIN_RATE_PER_MIN": "1000", "TRUCKX_BATCH_INTERVAL_MS": "10",
                    "TRUCKX_STORE_TIMEOUT_S": "5"}
        self.nodes: list[ServerProcess] = []
        #: WebSockets opened through :meth:`device_ws` / :meth:`event_feed`, closed at teardown
        self.sockets: list[WsClient] = []

    async def device_ws(self, srv: ServerProcess, token: str) -> WsClient:
        ws = await device_ws(srv, token)
        self.sockets.append(ws)
        return ws

    async def event_feed(self, srv: ServerProcess, token: str) -> WsClient:
        ws = await event_feed(srv, token)
        self.sockets.append(ws)
        return ws

    def node(self, name: str, *args: str, bus_url: str | None = None, env: dict[str, str] | None = None,
             start: bool = True) -> ServerProcess:
        srv = ServerProcess(self.root / name, "--sql-url", self.sql_url, "--locations-url", self.locations_url,
                            "--bus-url", bus_url or self.bus_url, "--bus-prefix", self.bus_prefix, "--node-id", name,
                            *args, env={**self.env, **(env or {})})
        self.nodes.append(srv)
        return srv.start() if start else srv

    async def aclose(self) -> None:
        """Close the test's sockets and stop every process, while the test's event loop still runs (so
        that the client sockets see their end)."""
        for ws in self.sockets:
            ws.close()
        await asyncio.to_thread(lambda: [srv.stop() for srv in self.nodes])
        for ws in self.sockets:
            with contextlib.suppress(Exception):
                await ws.wait_closed(2)


@pytest.fixture
async def cluster(tmp_path: Path, mariadb_url: str, mongo_db_url: str, redis_url: str,
                  bus_prefix: str) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, mariadb_url, mongo_db_url, redis_url, bus_prefix)
    try:
        yield c
    finally:
        await c.aclose()
