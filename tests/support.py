"""What the tests share besides fixtures: a running server's handle (real HTTP with httpx, real device
WebSockets with tornado's client, helpers to register devices and log in), and :class:`Probe`, the small
test API through which a test looks inside the server where the public API cannot show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator

import httpx
import tornado.httpclient
import tornado.websocket

from truckx_server import config
from truckx_server.app import Server
from truckx_server.models import make_imei

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
    def probe(self) -> "Probe":
        return Probe(self.server)

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



async def media_read(server: RunningServer, imei: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the server has read a complete video's metadata (``media.py``); its index row."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        row = await server.probe.sql.videos.get(imei, name)
        if row is not None and row["probed_at"] is not None:
            return row
        if loop.time() > deadline:
            raise TimeoutError(f"the metadata of {imei}/{name} was not read in {timeout} s")
        await asyncio.sleep(0.05)


async def wait_for_thumbnail(server: RunningServer, imei: str, name: str, headers: dict[str, str],
                             timeout: float = 30.0) -> bytes:
    """Wait until a video's thumbnail is made; its bytes."""
    row = await media_read(server, imei, name, timeout)
    assert row["thumbnail"], f"no thumbnail was made of {imei}/{name}: {row}"
    r = await server.http.get(f"/api/v1/admin/devices/{imei}/videos/{name}/thumbnail", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
    return r.content


async def stop_server(handle: RunningServer) -> None:
    """Stop a server started by ``server_factory`` (idempotent)."""
    if getattr(handle, "_stopped", False):
        return
    handle._stopped = True  # type: ignore[attr-defined]
    for sock in handle.sockets:
        sock.close()
    await handle.http.aclose()
    await handle.server.stop(flush_timeout_s=5)


ServerFactory = Callable[..., Awaitable[RunningServer]]


class Probe:
    """The test API: what a test may look at or do inside a running server where the public API cannot
    show it (rows as stored, the live-session table, the write path of the location batcher). Everything
    else goes through HTTP and WebSockets like any client."""

    def __init__(self, server: Server) -> None:
        self._node = server.node

    # -- what is stored --------------------------------------------------------------------------

    @property
    def sql(self) -> Any:
        """The relational store's aggregates (``.devices``, ``.users``, ``.alarms``, ``.videos``,
        ``.commands``), to read rows as stored and to seed rows no API call makes."""
        return self._node.sql

    async def geofences_evaluated(self, timeout_s: float = 10.0) -> None:
        """Write the pending location batch, then wait until the geofence evaluator has evaluated every
        point stored so far (its queue and its catch-ups are empty)."""
        assert await self._node.flush_locations(timeout_s)
        assert await self._node.geofences.evaluator.drain(timeout_s)

    async def stop_geofence_evaluator(self) -> None:
        """Stop the geofence evaluator as a crash would: what is queued is never evaluated here."""
        evaluator = self._node.geofences.evaluator
        task, evaluator._task = evaluator._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def geofence_evaluator(self) -> Any:
        return self._node.geofences.evaluator

    async def stored_points(self, imei: str, limit: int = 1_000_000) -> list[Any]:
        """The device's points as stored, oldest first."""
        return await self._node.location_store.track(imei, None, None, limit)

    @property
    def location_store(self) -> Any:
        return self._node.location_store

    async def sqlite_pragma(self, name: str) -> dict[str, Any]:
        """``PRAGMA <name>`` as the server's own connections see it, for each store kept in SQLite
        (``sql``, ``locations``); empty when no store is."""
        if not name.isidentifier():
            raise ValueError(name)
        out: dict[str, Any] = {}
        if self._node.sql.dialect == "sqlite":
            async def q(conn: Any) -> Any:
                return (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
            out["sql"] = await self._node.sql.db.run(q, write=False)
        from truckx_server.storage.locations_sqlite import SqliteLocationStore

        if isinstance(self._node.location_store, SqliteLocationStore):
            async with self._node.location_store.db.execute(f"PRAGMA {name}") as cur:
                out["locations"] = (await cur.fetchone())[0]
        return out

    # -- actions as the server takes them --------------------------------------------------------

    async def set_enabled(self, imei: str, enabled: bool) -> None:
        await self._node.devices.update(imei, {"enabled": enabled}, "admin")

    async def send_command(self, imei: str, body: dict[str, Any], by: str = "admin") -> dict[str, Any]:
        """What ``POST /devices/{imei}/commands`` does, without HTTP in between."""
        return await self._node.commands.send(imei, body, by)

    async def save_last_seen(self) -> None:
        await self._node.devices.save_last_seen()

    def issue_token(self, sub: str, role: str, version: int | None = None) -> str:
        """A token signed with this server's secret, as its login would issue it (``version`` None: one
        issued before tokens carried a version)."""
        return self._node.tokens.issue(sub, role, version)[0]

    @contextlib.contextmanager
    def failing(self, service: str, method: str, message: str = "injected failure") -> Iterator[None]:
        """While inside, ``node.<service>.<method>`` raises RuntimeError (an unexpected error, the kind
        that reaches a handler's uncaught-exception path)."""
        target = getattr(self._node, service)

        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(message)

        setattr(target, method, fail)
        try:
            yield
        finally:
            delattr(target, method)

    # -- live state of this process --------------------------------------------------------------

    def is_online(self, imei: str) -> bool:
        return self._node.hub.is_online(imei)

    def last_seen(self, imei: str) -> Any:
        return self._node.hub.last_seen.get(imei)

    @property
    def session_count(self) -> int:
        return len(self._node.hub.sessions)

    @property
    def feed_count(self) -> int:
        return self._node.events.feed_count

    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        self._node.bus.publish(event_type, data)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        return self._node.bus.subscribe(callback)

    @property
    def events_active(self) -> bool:
        return self._node.bus.active

    async def run_retention(self, now: Any = None) -> dict[str, Any] | None:
        """One retention pass as of ``now`` (a datetime; default the real time): what it removed, or None
        when another process held the lease."""
        return await self._node.retention.run_pass(now)

    @property
    def retention(self) -> Any:
        """The retention service (its rows, policy and stores)."""
        return self._node.retention

    async def video_object_size(self, imei: str, name: str) -> int | None:
        """The size of the complete video object in the video store (None when there is none)."""
        return await self._node.video_store.object_size(imei, name)

    @contextlib.contextmanager
    def upload_running(self, imei: str, name: str) -> Iterator[None]:
        """While inside, an upload of (imei, name) holds its claim on this process, as a running one does."""
        with self._node.video_store.claim(imei, name):
            yield

    def upload_busy(self, imei: str, name: str) -> bool:
        return self._node.video_store.is_busy(imei, name)

    def upload_writer(self, imei: str, name: str) -> Any:
        """The writer of an upload in progress (None when none runs)."""
        return self._node.video_store.active(imei, name)

    async def video_housekeeping(self) -> int:
        """Run the video store's clean-up now (S3: abort abandoned uploads); how many it removed."""
        return await self._node.video_store.housekeeping(force=True)

    @property
    def batcher(self) -> Any:
        """The location batcher (tests swap its ``store`` for one that fails or blocks)."""
        return self._node.batcher

    @property
    def login_guards(self) -> dict[str, Any]:
        """The login limiters (``ratelimit.LoginGuard``) of admin users and of devices."""
        return {"admin": self._node.users.login_guard, "device": self._node.devices.login_guard}

    def ws_message_count(self, kind: str) -> int:
        return self._node.metrics.ws_message_count(kind)

    @property
    def initial_admin_password(self) -> str | None:
        return self._node.initial_admin_password

