"""Admin devices: paged list with online / last_seen / last_location, one device, rename, disable (closes
the live session with 4403, login then 403), enable again, rotate the secret."""

from __future__ import annotations

import pytest
import tornado.httpclient

from tests.support import RunningServer, new_imei
from tests.server.support import make_user


async def test_list_shows_online_last_seen_and_last_location(api: RunningServer) -> None:
    admin = await api.admin_headers()
    live = await api.register(name="live one")
    idle = await api.register(name="idle one", login=False)
    ws = await api.connect(live)
    await ws.send({"type": "location", "seq": 1, "ts": "2026-01-01T00:00:00Z", "lat": 48.1, "lon": 11.5,
                   "speed_kmh": 80})
    await ws.send({"type": "location", "seq": 2, "ts": "2026-01-01T00:00:10Z", "lat": 48.2, "lon": 11.6})
    await ws.wait_ack(2)

    items = []
    cursor = None
    while True:
        r = await api.http.get("/api/v1/admin/devices", params={"limit": 1, **({"cursor": cursor} if cursor else {})},
                               headers=admin)
        assert r.status_code == 200
        page = r.json()
        assert len(page["items"]) <= 1
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    by_imei = {d["imei"]: d for d in items}
    assert [d["imei"] for d in items] == sorted(by_imei) and set(by_imei) == {live.imei, idle.imei}
    d = by_imei[live.imei]
    assert d["name"] == "live one" and d["enabled"] is True and d["online"] is True and d["last_seen"]
    assert d["last_location"] == {"imei": live.imei, "ts": "2026-01-01T00:00:10Z", "lat": 48.2, "lon": 11.6}
    d = by_imei[idle.imei]
    assert d["online"] is False and d["last_seen"] is None and d["last_location"] is None

    ws.close()
    await ws.wait_closed()
    r = await api.http.get(f"/api/v1/admin/devices/{live.imei}", headers=admin)
    assert r.status_code == 200 and r.json()["online"] is False and r.json()["last_seen"] is not None


async def test_one_device_errors(api: RunningServer) -> None:
    admin = await api.admin_headers()
    r = await api.http.get(f"/api/v1/admin/devices/{new_imei()}", headers=admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.http.get("/api/v1/admin/devices/123456789012345", headers=admin)  # bad Luhn digit
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
    r = await api.http.get("/api/v1/admin/devices", params={"cursor": "not-a-cursor"}, headers=admin)
    assert r.status_code == 400 and "cursor" in r.json()["error"]["message"]
    r = await api.http.get("/api/v1/admin/devices", params={"limit": 1001}, headers=admin)
    assert r.status_code == 400
    r = await api.http.patch(f"/api/v1/admin/devices/{new_imei()}", json={"name": "x"}, headers=admin)
    assert r.status_code == 404
    dev = await api.register(login=False)
    for body in ({}, {"enabled": "no"}, {"name": 5}, {"name": "x" * 129}):
        r = await api.http.patch(f"/api/v1/admin/devices/{dev.imei}", json=body, headers=admin)
        assert r.status_code == 400, body


async def test_rename_disable_closes_session_and_enable(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register(name="old")
    ws = await api.connect(dev)
    await ws.send({"type": "ping"})
    await ws.wait_for(lambda m: m["type"] == "pong")

    r = await api.http.patch(f"/api/v1/admin/devices/{dev.imei}", json={"name": "new"}, headers=admin)
    assert r.status_code == 200 and r.json()["name"] == "new" and r.json()["enabled"] is True

    r = await api.http.patch(f"/api/v1/admin/devices/{dev.imei}", json={"enabled": False}, headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert await ws.wait_closed() == 4403
    r = await api.http.post("/api/v1/device/login", json={"imei": dev.imei, "secret": dev.secret})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # the token it had is refused too
    r = await api.http.post("/api/v1/device/alarms", json={"type": "CRASH", "ts": "2026-01-01T00:00:00Z",
                                                           "lat": 1, "lon": 2},
                            headers={"Authorization": f"Bearer {dev.token}"})
    assert r.status_code == 403

    r = await api.http.patch(f"/api/v1/admin/devices/{dev.imei}", json={"enabled": True, "name": None},
                             headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is True and r.json()["name"] is None
    assert await api.device_login(dev)


async def test_rotate_secret(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register(login=False)
    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/secret", headers=admin)
    assert r.status_code == 200
    new_secret = r.json()["secret"]
    assert r.json()["imei"] == dev.imei and new_secret != dev.secret and len(new_secret) >= 32
    r = await api.http.post("/api/v1/device/login", json={"imei": dev.imei, "secret": dev.secret})
    assert r.status_code == 401
    r = await api.http.post("/api/v1/device/login", json={"imei": dev.imei, "secret": new_secret})
    assert r.status_code == 200
    r = await api.http.post(f"/api/v1/admin/devices/{new_imei()}/secret", headers=admin)
    assert r.status_code == 404


async def test_rotating_the_secret_revokes_old_tokens_and_the_live_session(api: RunningServer) -> None:
    dev = await api.register()
    ws = await api.connect(dev)
    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/secret", headers=await api.admin_headers())
    assert r.status_code == 200
    assert await ws.wait_closed() == 4401
    old = {"Authorization": f"Bearer {dev.token}"}
    r = await api.http.post("/api/v1/device/alarms", headers=old, json={
        "type": "CRASH", "ts": "2026-11-01T08:00:00Z", "lat": 1, "lon": 2})
    assert r.status_code == 401 and "rotated" in r.json()["error"]["message"]
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await api.connect(dev)
    assert info.value.code == 401
    dev.secret = r_secret = (await api.http.post(f"/api/v1/admin/devices/{dev.imei}/secret",
                                                 headers=await api.admin_headers())).json()["secret"]
    assert r_secret
    dev.token = await api.device_login(dev)
    ws2 = await api.connect(dev)
    await ws2.send({"type": "ping"})
    assert await ws2.wait_for(lambda m: m["type"] == "pong")


async def test_viewer_reads_devices_but_changes_nothing(api: RunningServer) -> None:
    viewer = await make_user(api, "vi", "viewer")
    dev = await api.register(name="keep", login=False)
    r = await api.http.get("/api/v1/admin/devices", headers=viewer)
    assert r.status_code == 200 and [d["imei"] for d in r.json()["items"]] == [dev.imei]
    for method, path, body in (("PATCH", f"/api/v1/admin/devices/{dev.imei}", {"enabled": False}),
                               ("POST", f"/api/v1/admin/devices/{dev.imei}/secret", None),
                               ("POST", "/api/v1/admin/devices", {"imei": new_imei()})):
        r = await api.http.request(method, path, json=body, headers=viewer)
        assert r.status_code == 403, path
        assert r.json()["error"]["message"] == "this call needs role admin; your token has role viewer, which may only read"
    stored = await api.probe.sql.devices.get(dev.imei)
    assert stored["enabled"] and stored["name"] == "keep"
    assert await api.device_login(dev)
