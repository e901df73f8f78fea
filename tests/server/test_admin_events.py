"""The admin live event feed (``/api/v1/admin/events``): location, alarm, device_status, command_status
and video events; ``?imei=`` filtering; token in the header or ``?token=``; roles; a slow consumer is
closed instead of buffering without bound; shutdown closes every feed."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import pytest
import tornado.httpclient
import tornado.websocket

from tests.support import RunningServer, stop_server
from tests.server.support import events_socket, make_user, report_alarm
from truckx_server.handlers.events import EventsSocket


class Feed:
    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    async def ready(self) -> None:
        await self.conn.write_message(json.dumps({"type": "ping"}))
        await self.wait(lambda e: e["type"] == "pong")

    async def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        for event in self.events:
            if predicate(event):
                return event
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.conn.read_message()
                if raw is None:
                    raise ConnectionError(f"feed closed with {self.conn.close_code}")
                event = json.loads(raw)
                self.events.append(event)
                if predicate(event):
                    return event

    async def drain(self, seconds: float = 0.3) -> None:
        try:
            async with asyncio.timeout(seconds):
                while (raw := await self.conn.read_message()) is not None:
                    self.events.append(json.loads(raw))
        except TimeoutError:
            pass


async def test_feed_carries_every_event_kind_and_filters_by_imei(api: RunningServer) -> None:
    admin = await api.admin_headers()
    viewer = await make_user(api, "watcher", "viewer")
    one, two = await api.register(), await api.register()
    everything = Feed(await events_socket(api, admin))
    only_one = Feed(await events_socket(api, query=f"?imei={one.imei}&token={viewer['Authorization'][7:]}"))
    await everything.ready()
    await only_one.ready()

    ws1 = await api.connect(one)
    ws2 = await api.connect(two)
    for feed in (everything, only_one):
        e = await feed.wait(lambda e: e["type"] == "device_status" and e["imei"] == one.imei)
        assert e["online"] is True and e["at"]
    await everything.wait(lambda e: e["type"] == "device_status" and e["imei"] == two.imei)

    await ws1.send({"type": "location", "seq": 1, "ts": "2026-03-01T00:00:00Z", "lat": 1.0, "lon": 2.0})
    await ws2.send({"type": "location", "seq": 1, "ts": "2026-03-01T00:00:00Z", "lat": 3.0, "lon": 4.0})
    await ws1.wait_ack(1)
    await ws2.wait_ack(1)
    for feed in (everything, only_one):
        e = await feed.wait(lambda e: e["type"] == "location" and e["imei"] == one.imei)
        assert e["location"]["lat"] == 1.0
    await everything.wait(lambda e: e["type"] == "location" and e["imei"] == two.imei)

    alarm = await report_alarm(api, one)
    for feed in (everything, only_one):
        e = await feed.wait(lambda e: e["type"] == "alarm" and e["alarm"]["status"] == "active")
        assert e["alarm"]["id"] == alarm["id"] and e["imei"] == one.imei
    await api.http.post(f"/api/v1/admin/alarms/{alarm['id']}/ack", json={"note": "seen"}, headers=admin)
    e = await only_one.wait(lambda e: e["type"] == "alarm" and e["alarm"]["status"] == "acknowledged")
    assert e["alarm"]["acknowledged_by"] == "admin"

    r = await api.http.post(f"/api/v1/admin/devices/{one.imei}/commands", json={"command": "reset"}, headers=admin)
    cmd_id = r.json()["id"]
    frame = await ws1.wait_for(lambda m: m["type"] == "command")
    await ws1.send({"type": "command_result", "id": frame["id"], "ok": True})
    for status in ("queued", "sent", "succeeded"):
        e = await only_one.wait(lambda e, s=status: e["type"] == "command_status" and e["command"]["status"] == s)
        assert e["command"]["id"] == cmd_id

    api.probe.publish("video", {"imei": one.imei, "video": {"name": "a.mp4", "complete": True}})
    api.probe.publish("video", {"imei": two.imei, "video": {"name": "b.mp4", "complete": True}})
    await only_one.wait(lambda e: e["type"] == "video")

    ws2.close()
    await everything.wait(lambda e: e["type"] == "device_status" and e["imei"] == two.imei and not e["online"])
    await everything.wait(lambda e: e["type"] == "video" and e["imei"] == two.imei)
    await only_one.drain()
    assert {e.get("imei") for e in only_one.events if e["type"] != "pong"} == {one.imei}
    assert {e["type"] for e in everything.events} >= {"location", "alarm", "device_status", "command_status", "video"}
    everything.conn.close()
    only_one.conn.close()


async def test_feed_handshake_auth(api: RunningServer) -> None:
    dev = await api.register()
    cases = [({}, "", 401), ({"Authorization": "Bearer nonsense"}, "", 401),
             ({"Authorization": f"Bearer {dev.token}"}, "", 403), (await api.admin_headers(), "?imei=12345", 400)]
    for headers, query, status in cases:
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await events_socket(api, headers, query)
        assert info.value.code == status, (headers, query)

    viewer = await make_user(api, "gone", "viewer")
    r = await api.http.delete("/api/v1/admin/users/gone", headers=await api.admin_headers())
    assert r.status_code == 204
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await events_socket(api, viewer)
    assert info.value.code == 401


async def test_slow_consumer_is_closed_not_buffered(api: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EventsSocket, "queue_events", 20)
    feed = Feed(await events_socket(api, await api.admin_headers()))
    await feed.ready()
    assert api.probe.feed_count == 1
    for i in range(200):  # published faster than any writer can drain (no await in between)
        api.probe.publish("video", {"imei": "350000000000000", "video": {"name": f"{i}.mp4"}})
    with pytest.raises(ConnectionError, match="4429"):
        await feed.wait(lambda e: False)
    feed.conn.close()
    assert feed.conn.close_code == 4429
    assert api.probe.feed_count == 0
    assert not api.probe.events_active


async def test_shutdown_closes_every_feed(server_factory) -> None:  # noqa: ANN001
    srv = await server_factory()
    feed = Feed(await events_socket(srv, await srv.admin_headers()))
    await feed.ready()
    await stop_server(srv)
    with pytest.raises(ConnectionError, match="1001"):
        await feed.wait(lambda e: False)
    feed.conn.close()
