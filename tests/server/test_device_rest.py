"""Device login and alarms over real HTTP."""

from __future__ import annotations

import uuid

from tests.support import RunningServer, new_imei

ALARM = {"type": "crash", "ts": "2026-11-01T08:00:00Z", "lat": 48.1, "lon": 11.5, "speed_kmh": 63,
         "files": ["cam1_0800.mp4", "cam2_0800.mp4"], "details": {"g_force": 3.2}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_device_login(server: RunningServer) -> None:
    dev = await server.register(login=False)
    r = await server.http.post("/api/v1/device/login", json={"imei": dev.imei, "secret": dev.secret})
    assert r.status_code == 200 and r.json()["token"] and r.json()["expires_at"].endswith("Z")
    cases = [({"imei": dev.imei, "secret": "wrong"}, 401, "unauthorized"),
             ({"imei": new_imei(), "secret": dev.secret}, 401, "unauthorized"),
             ({"imei": "490154203237517", "secret": "x"}, 400, "invalid_argument"),
             ({"imei": dev.imei}, 400, "invalid_argument")]
    for body, status, code in cases:
        r = await server.http.post("/api/v1/device/login", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body
    r = await server.http.post("/api/v1/device/login", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    await server.probe.set_enabled(dev.imei, False)
    r = await server.http.post("/api/v1/device/login", json={"imei": dev.imei, "secret": dev.secret})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_device_secret_is_stored_hashed(server: RunningServer) -> None:
    dev = await server.register()
    row = await server.probe.sql.devices.get(dev.imei)
    assert dev.secret not in row.values() and len(row["secret_hash"]) == 64


async def test_alarm_is_stored_with_files(server: RunningServer) -> None:
    dev = await server.register()
    r = await server.http.post("/api/v1/device/alarms", json=ALARM, headers=bearer(dev.token))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["type"] == "CRASH" and body["imei"] == dev.imei and body["status"] == "active"
    assert body["files"] == [{"name": "cam1_0800.mp4", "arrived": False, "thumbnail": False},
                             {"name": "cam2_0800.mp4", "arrived": False, "thumbnail": False}]
    stored = await server.probe.sql.alarms.get(body["id"])
    assert stored["details"] == {"g_force": 3.2} and len(stored["files"]) == 2


async def test_alarm_retry_with_same_id_creates_nothing(server: RunningServer) -> None:
    dev = await server.register()
    alarm_id = str(uuid.uuid4())
    first = await server.http.post("/api/v1/device/alarms", json={**ALARM, "id": alarm_id}, headers=bearer(dev.token))
    again = await server.http.post("/api/v1/device/alarms", json={**ALARM, "id": alarm_id}, headers=bearer(dev.token))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    # another device cannot reuse (or read) that id
    other = await server.register()
    r = await server.http.post("/api/v1/device/alarms", json={**ALARM, "id": alarm_id}, headers=bearer(other.token))
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


async def test_bad_alarms_store_nothing(server: RunningServer) -> None:
    dev = await server.register()
    alarm_id = str(uuid.uuid4())
    for patch in ({"type": "FIRE"}, {"files": ["ok.mp4", "../../etc/passwd"]}, {"lat": 200}, {"ts": "yesterday"}):
        r = await server.http.post("/api/v1/device/alarms", json={**ALARM, "id": alarm_id, **patch},
                                   headers=bearer(dev.token))
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument", patch
    assert await server.probe.sql.alarms.get(alarm_id) is None


async def test_alarm_imei_comes_from_the_token(server: RunningServer) -> None:
    a, b = await server.register(), await server.register()
    r = await server.http.post("/api/v1/device/alarms", json={**ALARM, "imei": b.imei}, headers=bearer(a.token))
    assert r.status_code == 201 and r.json()["imei"] == a.imei


async def test_device_plane_refuses_other_roles_and_missing_tokens(server: RunningServer) -> None:
    r = await server.http.post("/api/v1/device/alarms", json=ALARM)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await server.http.post("/api/v1/device/alarms", json=ALARM, headers=await server.admin_headers())
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    dev = await server.register()
    r = await server.http.post("/api/v1/admin/devices", json={"imei": new_imei()}, headers=bearer(dev.token))
    assert r.status_code == 403
    await server.probe.set_enabled(dev.imei, False)
    r = await server.http.post("/api/v1/device/alarms", json=ALARM, headers=bearer(dev.token))
    assert r.status_code == 403


async def test_json_body_limit_is_413(server_factory) -> None:
    server = await server_factory(max_json_body_bytes=1000)
    dev = await server.register()
    r = await server.http.post("/api/v1/device/alarms", json={**ALARM, "details": {"x": "y" * 2000}},
                               headers=bearer(dev.token))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_bulk_registration_returns_each_secret_once(server: RunningServer) -> None:
    imeis = [new_imei() for _ in range(3)]
    r = await server.http.post("/api/v1/admin/devices", json={"devices": [{"imei": i} for i in imeis]},
                               headers=await server.admin_headers())
    assert r.status_code == 201
    secrets = {d["imei"]: d["secret"] for d in r.json()["devices"]}
    assert set(secrets) == set(imeis) and len(set(secrets.values())) == 3
    # all or none: one taken IMEI refuses the whole batch
    fresh = new_imei()
    r = await server.http.post("/api/v1/admin/devices", json={"devices": [{"imei": fresh}, {"imei": imeis[0]}]},
                               headers=await server.admin_headers())
    assert r.status_code == 409
    assert await server.probe.sql.devices.get(fresh) is None


async def test_credential_cache_follows_registration_disable_and_rotation(server: RunningServer) -> None:
    imei = new_imei()
    r = await server.http.post("/api/v1/device/login", json={"imei": imei, "secret": "x" * 20})
    assert r.status_code == 401  # unknown (and now cached as unknown)
    dev = await server.register(imei)  # registering forgets the cached miss
    assert dev.token
    await server.probe.set_enabled(imei, False)
    r = await server.http.post("/api/v1/device/login", json={"imei": imei, "secret": dev.secret})
    assert r.status_code == 403
    await server.probe.set_enabled(imei, True)
    assert await server.device_login(dev)
