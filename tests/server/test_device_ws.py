"""The device WebSocket session over a real connection: acks, dedupe, validation, replacement, backpressure."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import tornado.httpclient
import tornado.websocket

from tests.support import RunningServer, ServerFactory

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)


def ts(i: int) -> str:
    return (T0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def point(i: int, **extra: object) -> dict:
    return {"ts": ts(i), "lat": 48.0 + i * 1e-4, "lon": 11.0 + i * 1e-4, **extra}


async def stored(server: RunningServer, imei: str) -> list:
    return await server.probe.stored_points(imei, 100_000)


async def test_single_and_batched_locations_are_acked_after_storage(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    await ws.send({"type": "location", "seq": 1, **point(0, speed_kmh=72.5, heading=90, alt_m=500, accuracy_m=4)})
    await ws.send({"type": "locations", "seq": 2, "points": [point(i) for i in range(1, 500)]})
    await ws.wait_ack(2)
    points = await stored(server, dev.imei)
    assert len(points) == 500
    assert points[0].speed_kmh == 72.5 and points[0].heading == 90 and points[0].alt_m == 500
    assert [p.ts for p in points] == sorted(p.ts for p in points)


async def test_resent_batch_does_not_double_points(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    batch = [point(i) for i in range(200)]
    await ws.send({"type": "locations", "seq": 1, "points": batch})
    await ws.wait_ack(1)
    ws.close()
    # the device did not see the ack (say) and resends everything, plus new points, on a new connection
    ws2 = await server.connect(dev)
    await ws2.send({"type": "locations", "seq": 1, "points": batch + [point(i) for i in range(200, 250)]})
    await ws2.send({"type": "location", "seq": 2, **point(10)})  # a single duplicate too
    await ws2.wait_ack(2)
    points = await stored(server, dev.imei)
    assert len(points) == 250
    assert len({p.ts for p in points}) == 250


class FailingFirstWrites:
    """Wraps the real store; the first ``n`` writes fail as an unreachable database would."""

    def __init__(self, store, n: int) -> None:
        self.store, self.remaining, self.calls = store, n, 0

    async def write(self, points) -> None:
        self.calls += 1
        if self.remaining > 0:
            self.remaining -= 1
            raise ConnectionError("store down")
        await self.store.write(points)


async def test_point_is_never_acked_before_it_is_stored(server: RunningServer) -> None:
    batcher = server.probe.batcher
    failing = FailingFirstWrites(batcher.store, 3)
    batcher.store = failing
    dev = await server.register()
    ws = await server.connect(dev)
    await ws.send({"type": "location", "seq": 7, **point(0)})
    # while the store fails there is no ack, and readiness says so
    with pytest.raises(TimeoutError):
        await ws.wait_ack(7, timeout=0.2)
    assert await stored(server, dev.imei) == []
    assert batcher.degraded
    r = await server.http.get("/readyz")
    assert r.status_code == 503 and r.json()["stores"]["locations"] != "ok"
    ack = await ws.wait_ack(7, timeout=5)
    assert ack == {"type": "ack", "seq": 7}
    assert failing.calls == 4
    assert len(await stored(server, dev.imei)) == 1
    assert (await server.http.get("/readyz")).status_code == 200


async def test_bad_messages_get_error_frames_and_the_session_stays_open(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    cases = [
        ("not json", "invalid_json"),
        (json.dumps([1, 2]), "invalid_argument"),
        (json.dumps({"type": "teleport"}), "invalid_argument"),
        (json.dumps({"type": "location", "ts": ts(0), "lat": 1, "lon": 1}), "invalid_argument"),  # no seq
        (json.dumps({"type": "locations", "seq": 3, "points": []}), "invalid_argument"),
        (json.dumps({"type": "locations", "seq": 4, "points": [point(i) for i in range(1001)]}), "invalid_argument"),
        (json.dumps({"type": "command_result", "id": "nope", "ok": True}), "not_found"),
    ]
    for frame, code in cases:
        await ws.send(frame)
        err = await ws.wait_for(lambda m: m["type"] == "error")
        assert err["code"] == code, frame[:60]
    await ws.conn.write_message(b"\x00\x01", binary=True)
    assert (await ws.wait_for(lambda m: m["type"] == "error"))["code"] == "invalid_json"
    await ws.send({"type": "ping"})
    assert await ws.wait_for(lambda m: m["type"] == "pong") == {"type": "pong"}


async def test_invalid_points_are_refused_and_valid_ones_kept(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pts = [point(0), {"ts": ts(1), "lat": 95, "lon": 0}, point(2), {"ts": future, "lat": 0, "lon": 0}]
    await ws.send({"type": "locations", "seq": 1, "points": pts})
    err = await ws.wait_for(lambda m: m["type"] == "error")
    assert err["seq"] == 1 and [r["index"] for r in err["rejected"]] == [1, 3]
    await ws.wait_ack(1)
    assert [p.ts for p in await stored(server, dev.imei)] == [T0, T0 + dt.timedelta(seconds=2)]


async def test_oversized_frame_closes_with_1009(server_factory: ServerFactory) -> None:
    server = await server_factory(max_ws_message_bytes=2000)
    dev = await server.register()
    ws = await server.connect(dev)
    await ws.send({"type": "locations", "seq": 1, "points": [point(i) for i in range(100)]})
    assert await ws.wait_closed() == 1009


async def test_second_connection_replaces_the_first(server: RunningServer) -> None:
    dev = await server.register()
    first = await server.connect(dev)
    await first.send({"type": "ping"})
    await first.wait_for(lambda m: m["type"] == "pong")
    second = await server.connect(dev)
    assert await first.wait_closed() == 4409
    await second.send({"type": "location", "seq": 1, **point(0)})
    await second.wait_ack(1)
    assert server.probe.is_online(dev.imei)


async def test_handshake_refuses_bad_tokens(server: RunningServer) -> None:
    dev = await server.register()
    for headers, status in (({}, 401), ({"Authorization": "Bearer garbage"}, 401),
                            ({"Authorization": f"Bearer {await server.admin_token()}"}, 403)):
        req = tornado.httpclient.HTTPRequest(server.ws_url, headers=headers)
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await tornado.websocket.websocket_connect(req)
        assert info.value.code == status
    # ?token= works for clients that cannot set headers
    conn = await tornado.websocket.websocket_connect(f"{server.ws_url}?token={dev.token}")
    conn.write_message(json.dumps({"type": "ping"}))
    assert json.loads(await conn.read_message()) == {"type": "pong"}
    conn.close()


async def test_disabled_device_cannot_connect(server: RunningServer) -> None:
    dev = await server.register()
    await server.probe.set_enabled(dev.imei, False)
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await server.connect(dev)
    assert info.value.code == 403


async def test_online_offline_and_last_seen(server: RunningServer) -> None:
    dev = await server.register()
    probe = server.probe
    assert not probe.is_online(dev.imei)
    ws = await server.connect(dev)
    assert probe.is_online(dev.imei)
    connected_at = probe.last_seen(dev.imei)
    ws.close()
    for _ in range(100):
        if not probe.is_online(dev.imei):
            break
        await asyncio.sleep(0.01)
    assert not probe.is_online(dev.imei)
    assert probe.last_seen(dev.imei) >= connected_at
    # persisted (periodically, and at shutdown)
    await probe.save_last_seen()
    row = await probe.sql.devices.get(dev.imei)
    assert row["last_seen"] == probe.last_seen(dev.imei)


class BlockedStore:
    def __init__(self, store) -> None:
        self.store = store
        self.release = asyncio.Event()
        self.max_batch = 0

    async def write(self, points) -> None:
        await self.release.wait()
        self.max_batch = max(self.max_batch, len(points))
        await self.store.write(points)


async def test_full_queue_stops_reading_instead_of_growing(server_factory: ServerFactory) -> None:
    server = await server_factory(batch_max_points=100, batch_queue_points=300, batch_interval_ms=5)
    batcher = server.probe.batcher
    blocked = BlockedStore(batcher.store)
    batcher.store = blocked
    dev = await server.register()
    ws = await server.connect(dev)
    for seq in range(1, 21):  # 20 messages of 50 points: far more than the queue holds
        await ws.send({"type": "locations", "seq": seq, "points": [point(seq * 100 + i) for i in range(50)]})
    await asyncio.sleep(0.3)
    # one batch is held by the blocked write; the queue holds at most its bound; the rest is unread
    assert batcher.queued_points <= 300
    assert server.probe.ws_message_count("locations") < 20
    blocked.release.set()
    await ws.wait_ack(20, timeout=10)
    assert len(await stored(server, dev.imei)) == 1000
    assert blocked.max_batch <= 100


async def test_device_cannot_write_for_another_imei(server: RunningServer) -> None:
    a, b = await server.register(), await server.register()
    ws = await server.connect(a)
    # a body naming another IMEI changes nothing: the IMEI comes from the token
    await ws.send({"type": "location", "seq": 1, "imei": b.imei, **point(0)})
    await ws.wait_ack(1)
    assert len(await stored(server, a.imei)) == 1
    assert await stored(server, b.imei) == []


async def test_a_burst_past_the_frame_budget_is_read_in_order_and_all_acked(server: RunningServer) -> None:
    # a tiny allowance per turn of the loop, so the connection is paused and resumed many times
    server.server.node.frame_budget.per_turn = 3
    dev = await server.register()
    ws = await server.connect(dev)
    for seq in range(1, 301):
        await ws.send({"type": "location", "seq": seq, **point(seq)})
    health = await server.http.get("/healthz")  # other requests are served meanwhile
    assert health.status_code == 200
    await ws.wait_ack(300, timeout=20)
    points = await stored(server, dev.imei)
    assert [p.ts for p in points] == [T0 + dt.timedelta(seconds=i) for i in range(1, 301)]
    assert server.probe.ws_message_count("location") == 300
