"""Store outages while devices stream: a TCP proxy written here sits between the server and MariaDB
and between the server and MongoDB (SecantusDB). The test cuts both while devices stream, then restores
them, and checks the ingest contract: no acks while the store is down, every acknowledged point stored,
every resent point stored once, and the server recovered by itself (no restart)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from tests.backends import Backend
from tests.support import Device, RunningServer, ServerFactory, WsClient
from truckx_server.models import UTC

pytestmark = [pytest.mark.mariadb, pytest.mark.mongo, pytest.mark.slow]


class TcpProxy:
    """An asyncio TCP forwarder on 127.0.0.1. ``cut()`` closes every connection and refuses new ones
    (accepted and closed at once) until ``restore()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.open = True
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> "TcpProxy":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(self._pump(reader, up_writer)), asyncio.create_task(self._pump(up_reader, writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            for t in pumps:
                t.cancel()
                self._tasks.discard(t)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    def cut(self) -> None:
        self.open = False
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.sleep(0.05)  # let the connection handlers finish


@dataclass
class Proxies:
    sql: TcpProxy
    mongo: TcpProxy

    def cut(self) -> None:
        self.sql.cut()
        self.mongo.cut()

    def restore(self) -> None:
        self.sql.restore()
        self.mongo.restore()


@pytest.fixture
async def proxies(mariadb_url: str, mongo_db_url: str) -> AsyncIterator[Proxies]:
    u = make_url(mariadb_url)
    mongo_host, mongo_port = mongo_db_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    p = Proxies(await TcpProxy(u.host or "127.0.0.1", u.port or 3306).start(),
                await TcpProxy(mongo_host, int(mongo_port)).start())
    yield p
    await p.sql.close()
    await p.mongo.close()


@pytest.fixture(params=[pytest.param("mariadb+mongo", id="mariadb+mongo")])
def backend(request: pytest.FixtureRequest, mariadb_url: str, mongo_db_url: str, proxies: Proxies) -> Backend:
    """Overrides tests/backends.py: both stores reached through the proxies."""
    sql_url = make_url(mariadb_url).set(host="127.0.0.1", port=proxies.sql.port).render_as_string(hide_password=False)
    rest = mongo_db_url.split("://", 1)[1].split("/", 1)[1]
    return Backend(request.param, sql_url, f"mongodb://127.0.0.1:{proxies.mongo.port}/{rest}")


T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


@dataclass
class SimDevice:
    """A device as the contract wants it: keeps every unacknowledged point and resends it after
    reconnecting."""
    dev: Device
    ws: WsClient | None = None
    seq: int = 0
    next_point: int = 0
    unacked: dict[int, list[dict]] = field(default_factory=dict)  # seq -> points
    acked: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    resent: set[str] = field(default_factory=set)
    acks_seen: int = 0
    reader: asyncio.Task[None] | None = None

    def point(self) -> dict:
        ts = (T0 + dt.timedelta(seconds=self.next_point)).isoformat().replace("+00:00", "Z")
        self.next_point += 1
        self.sent.add(ts)
        return {"ts": ts, "lat": 10 + self.next_point / 1000, "lon": 20.0}

    async def attach(self, ws: WsClient) -> None:
        self.ws = ws
        self.reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: WsClient) -> None:
        with contextlib.suppress(Exception):
            while True:
                msg = await ws.recv(60)
                if msg is None:
                    return
                if msg.get("type") == "ack":
                    self.acks_seen += 1
                    for seq in [s for s in self.unacked if s <= msg["seq"]]:
                        self.acked.update(p["ts"] for p in self.unacked.pop(seq))

    async def send_one(self) -> None:
        assert self.ws is not None
        self.seq += 1
        p = self.point()
        self.unacked[self.seq] = [p]
        await self.ws.send({"type": "location", "seq": self.seq, **p})

    async def resend_unacked(self) -> None:
        assert self.ws is not None
        points = [p for seq in sorted(self.unacked) for p in self.unacked.pop(seq)]
        self.resent.update(p["ts"] for p in points)
        for i in range(0, len(points), 1000):
            self.seq += 1
            self.unacked[self.seq] = points[i:i + 1000]
            await self.ws.send({"type": "locations", "seq": self.seq, "points": points[i:i + 1000]})

    async def drop(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5)
        self.ws = None


async def stream(devices: list[SimDevice], seconds: float, interval: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.gather(*(d.send_one() for d in devices))
        await asyncio.sleep(interval)


async def wait_ready(server: RunningServer, want: int, timeout: float = 30.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await server.http.get("/readyz")
        if r.status_code == want or loop.time() > deadline:
            assert r.status_code == want, r.text
            return r.json()
        await asyncio.sleep(0.2)


async def connect_retrying(server: RunningServer, dev: Device, timeout: float = 30.0) -> WsClient:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await server.connect(dev)
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_store_outage_while_devices_stream(server_factory: ServerFactory, proxies: Proxies) -> None:
    server = await server_factory(store_timeout_s=2.0, batch_interval_ms=20)
    assert (await server.http.get("/readyz")).status_code == 200
    devices = [SimDevice(await server.register()) for _ in range(3)]
    for d in devices:
        await d.attach(await server.connect(d.dev))

    await stream(devices, 0.6)
    await asyncio.sleep(0.3)
    assert all(d.acked for d in devices), "acks flow while the stores are up"

    # -- outage: the devices keep streaming; nothing more is acknowledged -------------------------
    proxies.cut()
    await stream(devices, 0.5)
    acks_during = [d.acks_seen for d in devices]
    await stream(devices, 1.5)
    assert [d.acks_seen for d in devices] == acks_during, "no ack while the location store is down"
    body = await wait_ready(server, 503)
    assert body["stores"]["sql"] != "ok" and body["stores"]["locations"] != "ok"
    assert all(d.unacked for d in devices)
    # the devices lose their connections during the outage (what is queued server-side is still written)
    for d in devices:
        await d.drop()

    # -- recovery: no restart; devices reconnect and resend what was not acknowledged -------------
    proxies.restore()
    await wait_ready(server, 200)
    for d in devices:
        await d.attach(await connect_retrying(server, d.dev))
        await d.resend_unacked()
    await stream(devices, 0.3)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while any(d.unacked for d in devices) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert not any(d.unacked for d in devices), "everything is acknowledged after recovery"

    # -- every acknowledged point is stored, once -----------------------------------------------
    store = server.probe.location_store
    for d in devices:
        points = await store.track(d.dev.imei, None, None, 100_000)
        stored = [p.ts.isoformat().replace("+00:00", "Z") for p in points]
        assert len(stored) == len(set(stored)), "no (imei, ts) duplicates seen by a query"
        assert d.acked <= set(stored), "every acknowledged point is stored"
        assert set(stored) == d.sent  # and, in the end, everything the device sent
        assert d.resent, "the test did resend points"
        if getattr(store, "unique", False):
            raw = store.client[store.db_name]["locations"]  # type: ignore[attr-defined]
            assert await raw.count_documents({"imei": d.dev.imei}) == len(d.sent), "no duplicate in storage"
        (latest,) = await store.latest([d.dev.imei])
        assert latest.ts == max(p.ts for p in points)
    # the relational store recovered too: an admin call that writes works
    r = await server.http.post("/api/v1/admin/devices", json={"imei": "356938035643809"},
                               headers=await server.admin_headers())
    assert r.status_code == 201, r.text
    metrics = (await server.http.get("/metrics")).text
    assert json.dumps(metrics)  # served
