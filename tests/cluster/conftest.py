"""Fixtures of the cluster tests: :class:`Cluster`, which starts real ``truckx-server`` processes
(tests/process.py) sharing one MariaDB database, one MongoDB database (SecantusDB), the bus (the
machine's Redis, a key prefix per test) and the secrets. Redis and moto's S3 server come from
tests/services.py."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.cluster.support import device_ws, event_feed
from tests.process import ServerProcess
from tests.support import WsClient


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
        await asyncio.gather(*(ws.wait_closed(2) for ws in self.sockets), return_exceptions=True)


@pytest.fixture
async def cluster(tmp_path: Path, mariadb_url: str, mongo_db_url: str, redis_url: str,
                  bus_prefix: str) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, mariadb_url, mongo_db_url, redis_url, bus_prefix)
    try:
        yield c
    finally:
        await c.aclose()
