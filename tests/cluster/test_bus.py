"""Two ``truckx-server`` processes on one MariaDB database, one MongoDB database (SecantusDB) and the
machine's Redis: what the bus carries between them (issue 9). Every check goes through the public API
of one process or the other: commands posted on A reach the device on B, online status and events
cross, a newer socket on B replaces the one on A (4409), disabling or rotating on A closes the socket
on B and is refused on B at once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import tornado.httpclient

from tests.cluster.conftest import Cluster
from tests.cluster.support import bearer, eventually, location
from tests.support import new_imei
from truckx_server.vocab import CLOSE_CREDENTIALS_CHANGED, CLOSE_DISABLED, CLOSE_REPLACED

pytestmark = [pytest.mark.slow, pytest.mark.mariadb, pytest.mark.mongo]


async def test_commands_presence_and_events_cross_nodes(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    [dev] = a.register([new_imei()])
    imei = dev["imei"]
    async with httpx.AsyncClient(base_url=a.url, headers=bearer(a.admin_token()), timeout=30) as http_a, \
            httpx.AsyncClient(base_url=b.url, headers=bearer(b.admin_token()), timeout=30) as http_b:
        feed = await cluster.event_feed(a, a.admin_token())
        ws = await cluster.device_ws(b, dev["token"])  # the device's socket is on B

        # online on every process, and A's feed hears B's events
        async def online_on_a() -> bool:
            return (await http_a.get(f"/api/v1/admin/devices/{imei}")).json()["online"]
        await eventually(online_on_a, what="online on A")
        await feed.wait_for(lambda e: e["type"] == "device_status" and e["imei"] == imei and e["online"], 10)
        await ws.send(location(1, 1))
        await ws.wait_ack(1)
        event = await feed.wait_for(lambda e: e["type"] == "location" and e["imei"] == imei, 10)
        assert event["location"]["lat"] == pytest.approx(10.001)

        # a command posted on A reaches the device on B at once; ?wait= on A sees B's result
        r = await http_a.post(f"/api/v1/admin/devices/{imei}/commands", json={"command": "reset"})
        assert r.status_code == 202, r.text
        frame = await ws.wait_for(lambda m: m["type"] == "command", 5)
        assert frame["id"] == r.json()["id"]
        waiting = asyncio.ensure_future(http_a.get(f"/api/v1/admin/commands/{frame['id']}", params={"wait": 20}))
        await asyncio.sleep(0.2)  # the long poll is in place (it also reads the row, so no race either way)
        await ws.send({"type": "command_result", "id": frame["id"], "ok": True, "detail": "rebooting"})
        done = await asyncio.wait_for(waiting, 20)
        assert done.json()["status"] == "succeeded" and done.json()["detail"] == "rebooting"
        await feed.wait_for(lambda e: e["type"] == "command_status" and e["command"]["status"] == "succeeded", 10)

        # both processes list both nodes (as of their last heartbeat, every 2 s); B holds the one session
        for http in (http_a, http_b):
            async def both_nodes() -> dict:
                items = (await http.get("/api/v1/admin/nodes")).json()["items"]
                sessions = {n["node_id"]: n["sessions"] for n in items}
                return items if sessions == {"a": 0, "b": 1} else {}
            for node in await eventually(both_nodes, what="both nodes listed, one session on B"):
                assert node["started_at"] <= node["last_heartbeat"]

        # the device leaves B: offline on A, and A's feed says so
        ws.close()
        await feed.wait_for(lambda e: e["type"] == "device_status" and e["imei"] == imei and not e["online"], 10)

        async def offline_on_a() -> bool:
            return not (await http_a.get(f"/api/v1/admin/devices/{imei}")).json()["online"]
        await eventually(offline_on_a, what="offline on A")
        # a command queued while offline is delivered when the device connects to A (B queued it)
        r = await http_b.post(f"/api/v1/admin/devices/{imei}/commands", json={"command": "reset"})
        queued_id = r.json()["id"]
        ws = await cluster.device_ws(a, dev["token"])
        frame = await ws.wait_for(lambda m: m["type"] == "command", 10)
        assert frame["id"] == queued_id
        ws.close()
        feed.close()


async def test_newer_socket_on_b_replaces_the_one_on_a(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    [dev] = a.register([new_imei()])
    old = await cluster.device_ws(a, dev["token"])
    await old.send(location(1, 1))
    await old.wait_ack(1)
    new = await cluster.device_ws(b, dev["token"])
    assert await old.wait_closed(10) == CLOSE_REPLACED
    await new.send(location(2, 2))
    await new.wait_ack(2)
    async with httpx.AsyncClient(base_url=a.url, headers=bearer(a.admin_token())) as http_a:
        async def online_once() -> bool:
            nodes = {n["node_id"]: n["sessions"] for n in (await http_a.get("/api/v1/admin/nodes")).json()["items"]}
            return nodes.get("a") == 0 and nodes.get("b") == 1
        await eventually(online_once, what="one session, on B")
        assert (await http_a.get(f"/api/v1/admin/devices/{dev['imei']}")).json()["online"] is True
    new.close()


async def test_disable_and_rotate_on_a_act_on_b_at_once(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    one, two = a.register([new_imei(), new_imei()])
    async with httpx.AsyncClient(base_url=a.url, headers=bearer(a.admin_token())) as http_a, \
            httpx.AsyncClient(base_url=b.url) as http_b:
        # B has the credentials cached (logins and handshakes there)
        for dev in (one, two):
            r = await http_b.post("/api/v1/device/login", json={"imei": dev["imei"], "secret": dev["secret"]})
            assert r.status_code == 200
        ws_one, ws_two = await cluster.device_ws(b, one["token"]), await cluster.device_ws(b, two["token"])

        r = await http_a.patch(f"/api/v1/admin/devices/{one['imei']}", json={"enabled": False})
        assert r.status_code == 200
        assert await ws_one.wait_closed(1.0) == CLOSE_DISABLED  # within 1 s
        r = await http_b.post("/api/v1/device/login", json={"imei": one["imei"], "secret": one["secret"]})
        assert r.status_code == 403, r.text

        r = await http_a.post(f"/api/v1/admin/devices/{two['imei']}/secret")
        assert r.status_code == 200
        assert await ws_two.wait_closed(1.0) == CLOSE_CREDENTIALS_CHANGED
        r = await http_b.post("/api/v1/device/login", json={"imei": two["imei"], "secret": two["secret"]})
        assert r.status_code == 401, r.text
        new_secret = (await http_a.get(f"/api/v1/admin/devices/{two['imei']}")).status_code  # still registered
        assert new_secret == 200
        # the old token is refused on B too
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await cluster.device_ws(b, two["token"])
        assert refused.value.code == 401
