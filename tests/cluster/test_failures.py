"""Failures in a cluster of real processes: a node killed with ``kill -9`` while its devices stream (they
move to the survivor; every acknowledged point is stored, once), and a bus outage (Redis cut off from one
node through a TCP proxy: its devices keep streaming and being acked, ``/readyz`` says so, and after
the outage it rejoins by itself, delivers what was queued meanwhile and closes the socket of a device
disabled meanwhile)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.support import bearer, eventually, location
from tests.process import ServerProcess
from tests.server.test_faults import SimDevice, TcpProxy, stream
from tests.support import Device, new_imei
from truckx_server.vocab import CLOSE_DISABLED

pytestmark = [pytest.mark.slow, pytest.mark.mariadb, pytest.mark.mongo]


async def stored_track(srv: ServerProcess, token: str, imei: str) -> list[str]:
    """Every point of ``imei`` as the admin API shows it (all pages)."""
    out: list[str] = []
    cursor = None
    async with httpx.AsyncClient(base_url=srv.url, headers=bearer(token), timeout=30) as http:
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            body = (await http.get(f"/api/v1/admin/devices/{imei}/locations", params=params)).json()
            out.extend(p["ts"] for p in body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
                return out


async def test_kill_9_of_a_node_while_devices_stream(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    devices = [SimDevice(Device(d["imei"], d["secret"], d["token"])) for d in a.register([new_imei() for _ in range(4)])]
    for d in devices:
        await d.attach(await cluster.device_ws(a, d.dev.token))
    await stream(devices, 1.0)
    await eventually(lambda: _async(all(d.acked for d in devices)), what="acks from A")

    await asyncio.to_thread(a.kill)  # mid-stream: what was queued and not acknowledged is lost with it
    await stream_until_closed(devices)
    for d in devices:
        await d.drop()
    # the devices move to the survivor and resend everything not acknowledged
    for d in devices:
        await d.attach(await cluster.device_ws(b, d.dev.token))
        await d.resend_unacked()
    await stream(devices, 0.5)
    await eventually(lambda: _async(not any(d.unacked for d in devices)), timeout=30, what="everything acked on B")

    token = b.admin_token()
    for d in devices:
        stored = await stored_track(b, token, d.dev.imei)
        assert len(stored) == len(set(stored)), "each point stored once"
        assert d.acked <= set(stored), "every acknowledged point is stored"
        assert set(stored) == d.sent
    async with httpx.AsyncClient(base_url=b.url, headers=bearer(token)) as http:
        async def a_gone() -> bool:  # A stopped beating: it leaves the node list by itself
            return [n["node_id"] for n in (await http.get("/api/v1/admin/nodes")).json()["items"]] == ["b"]
        await eventually(a_gone, timeout=20, what="A gone from the node list")
        r = await http.get(f"/api/v1/admin/devices/{devices[0].dev.imei}")
        assert r.json()["online"] is True


async def _async(value: Any) -> Any:
    return value


async def stream_until_closed(devices: list[SimDevice], timeout: float = 10.0) -> None:
    """Keep sending until every device has noticed its socket is gone (sends into a dead socket fail
    or are never acked)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not all(d.reader is not None and d.reader.done() for d in devices):
        for d in devices:
            if d.reader is not None and not d.reader.done():
                try:
                    await d.send_one()
                except Exception:
                    pass
        await asyncio.sleep(0.02)


async def test_bus_outage_acks_go_on_and_delivery_resumes(cluster: Cluster) -> None:
    proxy = await TcpProxy("127.0.0.1", 6379).start()
    a: ServerProcess | None = None
    try:
        a = cluster.node("a", bus_url=f"redis://127.0.0.1:{proxy.port}/0")
        b = cluster.node("b")
        dev, other = a.register([new_imei(), new_imei()])
        imei = dev["imei"]
        ws = await cluster.device_ws(a, dev["token"])
        ws_other = await cluster.device_ws(a, other["token"])
        await ws.send(location(1, 1))
        await ws.wait_ack(1)
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as http_a, \
                httpx.AsyncClient(base_url=b.url, headers=bearer(b.admin_token()), timeout=30) as http_b:
            async def online_on_b() -> bool:
                return (await http_b.get(f"/api/v1/admin/devices/{imei}")).json()["online"]
            await eventually(online_on_b, what="online on B")

            proxy.cut()

            async def bus_down_on_a() -> bool:
                r = await http_a.get("/readyz")
                return r.status_code == 503 and r.json()["stores"]["bus"] != "ok"
            await eventually(bus_down_on_a, what="A's /readyz reporting the bus")
            body = (await http_a.get("/readyz")).json()
            assert all(body["stores"][k] == "ok" for k in ("sql", "locations", "videos")), body
            r = await http_a.get("/api/v1/admin/nodes", headers=bearer(a.admin_token()))
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
            # the device keeps streaming and being acknowledged
            for seq in range(2, 30):
                await ws.send(location(seq, seq))
                await ws.wait_ack(seq)
            # a command queued on B meanwhile cannot reach A now; it is not lost
            r = await http_b.post(f"/api/v1/admin/devices/{imei}/commands", json={"command": "reset"})
            assert r.status_code == 202 and r.json()["status"] == "queued"
            command_id = r.json()["id"]
            # and a device disabled on B meanwhile: A cannot hear of it now
            r = await http_b.patch(f"/api/v1/admin/devices/{other['imei']}", json={"enabled": False})
            assert r.status_code == 200

            proxy.restore()

            async def bus_up_on_a() -> bool:
                return (await http_a.get("/readyz")).status_code == 200
            await eventually(bus_up_on_a, timeout=20, what="A rejoining the bus")
            frame = await ws.wait_for(lambda m: m["type"] == "command", 20)
            assert frame["id"] == command_id
            assert await ws_other.wait_closed(20) == CLOSE_DISABLED  # checked again after the outage
            await ws.send(location(30, 30))
            await ws.wait_ack(30)
            # A republished its presence and its node: B sees both again
            await eventually(online_on_b, what="online on B after the outage")

            async def both_nodes() -> bool:
                items = (await http_b.get("/api/v1/admin/nodes")).json()["items"]
                return {n["node_id"] for n in items} == {"a", "b"}
            await eventually(both_nodes, what="A listed again")
        assert len(await stored_track(b, b.admin_token(), imei)) == 30
    finally:
        if a is not None:  # A first: it would keep reconnecting through the proxy
            assert await asyncio.to_thread(a.stop) == 0, a.log_text()
        await proxy.close()
