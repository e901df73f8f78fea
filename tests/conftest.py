"""Shared fixtures: a real truckx server on an unused port, real HTTP (httpx) and real WebSocket
clients (tornado's), and helpers to register devices and log in.

Backends: ``server_factory`` (and so every end-to-end test) runs once per store combination named in
``TRUCKX_TEST_BACKENDS`` (default ``sqlite,mariadb+mongo``); see tests/backends.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest
import tornado.websocket

from truckx_server import config
from truckx_server.app import Server
from truckx_server.config import Secret
from truckx_server.models import make_imei

from tests.backends import Backend, backend, mariadb_url, mongo_address, mongo_db_url  # noqa: F401 (fixtures)

ADMIN_PASSWORD = "test-admin-password"
_imei_counter = itertools.count(random.randrange(10**6))


def new_imei() -> str:
    """A fresh valid IMEI (Luhn-checked), different on every call."""
    return make_imei(f"35{next(_imei_counter):012d}")


@dataclass
class Device:
    imei: str
    secret: str
    token: str = ""


@dataclass
class RunningServer:
    server: Server
    settings: config.Settings
    http: httpx.AsyncClient
    _admin_token: str | None = None
    sockets: list[Any] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/device/ws"

    @property
    def services(self):  # noqa: ANN201 - the server's Services
        return self.server.services

    async def admin_token(self) -> str:
        if self._admin_token is None:
            r = await self.http.post("/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200, r.text
            self._admin_token = r.json()["token"]
        return self._admin_token

    async def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.admin_token()}"}

    async def register(self, imei: str | None = None, name: str | None = None, login: bool = True) -> Device:
        imei = imei or new_imei()
        r = await self.http.post("/api/v1/admin/devices", json={"imei": imei, "name": name},
                                 headers=await self.admin_headers())
        assert r.status_code == 201, r.text
        device = Device(imei=imei, secret=r.json()["secret"])
        if login:
            device.token = await self.device_login(device)
        return device

    async def device_login(self, device: Device) -> str:
        r = await self.http.post("/api/v1/device/login", json={"imei": device.imei, "secret": device.secret})
        assert r.status_code == 200, r.text
        return r.json()["token"]

    async def connect(self, device: Device | str, **kwargs: Any) -> "WsClient":
        token = device.token if isinstance(device, Device) else device
        request = tornado.httpclient.HTTPRequest(self.ws_url, headers={"Authorization": f"Bearer {token}"})
        conn = await tornado.websocket.websocket_connect(request, **kwargs)
        client = WsClient(conn)
        self.sockets.append(client)
        return client


import tornado.httpclient  # noqa: E402  (after the dataclasses that name it)


class WsClient:
    """A device's WebSocket with helpers to send JSON and wait for a given kind of frame."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.received: list[dict[str, Any]] = []
        self._cursor = 0
        self.close_code: int | None = None

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.conn.write_message(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next frame (None once closed)."""
        if self._cursor < len(self.received):
            self._cursor += 1
            return self.received[self._cursor - 1]
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            self.close_code = self.conn.close_code
            return None
        msg = json.loads(raw)
        self.received.append(msg)
        self._cursor += 1
        return msg

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("frame not received in time")
            msg = await self.recv(remaining)
            if msg is None:
                raise ConnectionError(f"closed with code {self.close_code}")
            if predicate(msg):
                return msg

    async def wait_ack(self, seq: int, timeout: float = 5.0) -> dict[str, Any]:
        return await self.wait_for(lambda m: m.get("type") == "ack" and m["seq"] >= seq, timeout)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if msg is None:
                return self.close_code

    def close(self) -> None:
        self.conn.close()


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def server_factory(tmp_path: Path, backend: Backend) -> AsyncIterator[ServerFactory]:
    """Start servers with settings overrides; each is stopped at teardown. A second call with the same
    ``data_dir`` is a restart over the same stores."""
    running: list[RunningServer] = []

    async def start(**overrides: Any) -> RunningServer:
        from tests.backends import backend_overrides

        values: dict[str, Any] = dict(
            host="127.0.0.1", port=0, data_dir=tmp_path / "data",
            initial_admin_password=Secret(ADMIN_PASSWORD), batch_interval_ms=10,
            login_rate_per_min=1000, store_timeout_s=5.0,
        )
        values.update(backend_overrides(tmp_path, backend))
        values.update(overrides)
        settings = config.load(environ={}, **values)
        srv = Server(settings)
        await srv.start()
        handle = RunningServer(server=srv, settings=settings,
                               http=httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}", timeout=15))
        running.append(handle)
        return handle

    yield start
    for handle in reversed(running):
        await stop_server(handle)


async def stop_server(handle: RunningServer) -> None:
    """Stop a server started by ``server_factory`` (idempotent)."""
    if getattr(handle, "_stopped", False):
        return
    handle._stopped = True  # type: ignore[attr-defined]
    for sock in handle.sockets:
        sock.close()
    await handle.http.aclose()
    await handle.server.stop(flush_timeout_s=5)


@pytest.fixture
async def server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory()
