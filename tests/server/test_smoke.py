from tests.support import RunningServer


async def test_healthz_and_404_are_json(server: RunningServer) -> None:
    r = await server.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await server.http.get("/no/such/path")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_location_is_acked_and_stored(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    await ws.send({"type": "location", "seq": 1, "ts": "2026-01-01T00:00:00Z", "lat": 1.5, "lon": 2.5})
    await ws.wait_ack(1)
    points = await server.probe.stored_points(dev.imei, 10)
    assert [(p.lat, p.lon) for p in points] == [(1.5, 2.5)]
