"""The OpenAPI 3.1 document: valid, served without auth, listing exactly the routing table's REST
operations with the same roles, and describing the responses the server really sends (a tour calls every
operation and validates each response against the document)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from openapi_spec_validator import validate

from tests.clips import h264_mp4
from tests.support import ADMIN_PASSWORD, RunningServer, wait_for_thumbnail
from tests.server.support import (OpenApiChecker, implemented_methods, is_websocket,
                                             normalise, report_alarm, route_table)
from truckx_server import openapi

METHODS = {"get", "head", "post", "put", "patch", "delete", "options"}


def doc_operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): item[method] for path, item in doc["paths"].items()
            for method in item if method in METHODS}


def test_document_is_valid_openapi_31() -> None:
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # the OpenAPI 3.1 meta-schema, $refs resolved
    ids = [o["operationId"] for o in doc_operations(doc).values()]
    assert len(ids) == len(set(ids))


def test_document_and_routing_table_list_the_same_operations() -> None:
    doc = openapi.document()
    documented = {(m, normalise(p)): o for (m, p), o in doc_operations(doc).items()}
    routed: dict[tuple[str, str], tuple[str, ...] | None] = {}
    websockets = set()
    for _pattern, template, cls in route_table():
        if is_websocket(cls):
            websockets.add(template)
            continue
        for method in implemented_methods(cls):
            routed[(method, normalise(template))] = cls.roles[method]
    assert set(routed) - set(documented) == set(), "routes missing from the OpenAPI document"
    assert set(documented) - set(routed) == set(), "documented operations that no route serves"
    for key, roles in routed.items():
        declared = documented[key]["x-roles"]
        assert (None if roles is None else sorted(roles)) == (None if declared is None else sorted(declared)), key
        assert (documented[key]["security"] == []) == (roles is None), key
    assert websockets == set(doc["x-websockets"])
    for template in websockets:
        cls = next(c for _p, t, c in route_table() if t == template)
        assert sorted(doc["x-websockets"][template]["roles"]) == sorted(cls.roles["GET"])


def test_checker_is_not_vacuous() -> None:
    checker = OpenApiChecker(openapi.document())
    checker.check("GET", "/api/v1/admin/devices", 200, "application/json",
                  b'{"items": [{"imei": "35", "name": null}], "next_cursor": null}')
    checker.check("GET", "/api/v1/admin/devices", 418, "application/json", b'{"error": {"code": "teapot"}}')
    checker.check("GET", "/healthz", 200, "text/html", b"<p>ok</p>")
    assert len(checker.failures) == 3, checker.failures
    good = OpenApiChecker(openapi.document())
    good.check("GET", "/api/v1/admin/devices", 200, "application/json; charset=utf-8",
               b'{"items": [], "next_cursor": null}')
    good.check("GET", "/api/v1/admin/devices", 401, "application/json",
               b'{"error": {"code": "unauthorized", "message": "missing bearer token"}}')
    assert not good.failures and len(good.checked) == 2


async def test_served_without_auth(api: RunningServer) -> None:
    r = await api.http.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == openapi.document()


@pytest.mark.slow
async def test_every_operation_answers_as_documented(api: RunningServer) -> None:
    """Call every documented operation at least once with a success status; the ``api`` fixture
    validates each response against the document."""
    http = api.http
    admin = await api.admin_headers()
    await http.get("/healthz")
    await http.get("/readyz")
    await http.get("/metrics")
    await http.get("/api/v1/openapi.json")

    r = await http.post("/api/v1/admin/users", json={"username": "tour", "password": "tour-password-1"},
                        headers=admin)
    assert r.status_code == 201
    await http.get("/api/v1/admin/users", headers=admin)
    assert (await http.patch("/api/v1/admin/users/tour", json={"role": "operator"}, headers=admin)).status_code == 200
    r = await http.post("/api/v1/admin/users/tour/password", json={"password": "tour-password-2"}, headers=admin)
    assert r.status_code == 204
    assert (await http.get("/api/v1/admin/me", headers=admin)).json()["role"] == "admin"
    assert (await http.delete("/api/v1/admin/users/tour", headers=admin)).status_code == 204

    dev = await api.register()
    more = await http.post("/api/v1/admin/devices", json={"devices": [{"imei": "490154203237518", "name": "b"}]},
                           headers=admin)
    assert more.status_code == 201
    dh = {"Authorization": f"Bearer {dev.token}"}
    await http.get("/api/v1/admin/devices", params={"limit": 1}, headers=admin)
    await http.get(f"/api/v1/admin/devices/{dev.imei}", headers=admin)
    await http.patch(f"/api/v1/admin/devices/{dev.imei}", json={"name": "tour"}, headers=admin)

    ws = await api.connect(dev)
    await ws.send({"type": "location", "seq": 1, "ts": "2026-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0})
    await ws.wait_ack(1)

    data = b"video bytes " * 100
    r = await http.put("/api/v1/device/videos/a.mp4", content=data, headers=dh)
    assert r.status_code == 201, r.text
    r = await http.patch("/api/v1/device/videos/b.mp4", content=data[:100],
                         headers={**dh, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    r = await http.head("/api/v1/device/videos/b.mp4", headers=dh)
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "100"
    r = await http.patch("/api/v1/device/videos/b.mp4", content=data[100:],
                         headers={**dh, "Upload-Offset": "100", "Upload-Complete": "?1",
                                  "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
                                  "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 201, r.text

    # webhooks (a public address literal: allowed with --webhook-deny-private, no DNS needed)
    r = await http.post("/api/v1/admin/webhooks", json={"url": "https://93.184.215.14:9/hook",
                                                        "events": ["alarm.created"], "description": "tour"},
                        headers=admin)
    assert r.status_code == 201, r.text
    hook = r.json()["id"]
    assert (await http.get("/api/v1/admin/webhooks", headers=admin)).json()["items"][0]["id"] == hook
    alarm = await report_alarm(api, dev, files=["a.mp4"])
    for _ in range(100):
        deliveries = (await http.get(f"/api/v1/admin/webhooks/{hook}/deliveries", headers=admin)).json()["items"]
        if deliveries:
            break
        await asyncio.sleep(0.05)
    r = await http.patch(f"/api/v1/admin/webhooks/{hook}", json={"enabled": False}, headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert (await http.get(f"/api/v1/admin/webhooks/{hook}", headers=admin)).status_code == 200
    r = await http.post(f"/api/v1/admin/webhooks/{hook}/deliveries/{deliveries[0]['id']}/retry", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert (await http.delete(f"/api/v1/admin/webhooks/{hook}", headers=admin)).status_code == 204
    await http.get("/api/v1/admin/alarms", params={"has_video": "true"}, headers=admin)
    await http.get(f"/api/v1/admin/alarms/{alarm['id']}", headers=admin)
    await http.post(f"/api/v1/admin/alarms/{alarm['id']}/ack", json={"note": "ok"}, headers=admin)
    await http.post(f"/api/v1/admin/alarms/{alarm['id']}/clear", headers=admin)

    for fmt in ("json", "geojson", "gpx", "kml", "csv"):
        r = await http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params={"format": fmt}, headers=admin)
        assert r.status_code == 200
    for what in ("trips", "stops"):
        r = await http.get(f"/api/v1/admin/devices/{dev.imei}/{what}", params={"since": "2025-12-31T00:00:00Z",
                                                                            "until": "2026-01-02T00:00:00Z"},
                           headers=admin)
        assert r.status_code == 200 and r.json() == {"items": []}
    await http.get("/api/v1/admin/locations/latest", headers=admin)
    r = await http.get("/api/v1/admin/nodes", headers=admin)
    assert r.status_code == 200 and r.json()["items"][0]["sessions"] == 1

    r = await http.get(f"/api/v1/admin/devices/{dev.imei}/videos", headers=admin)
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    r = await http.get(f"/api/v1/admin/devices/{dev.imei}/videos/a.mp4", headers=admin)
    assert r.status_code == 200 and r.content == data
    r = await http.get(f"/api/v1/admin/devices/{dev.imei}/videos/a.mp4", headers={**admin, "Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == data[:10]
    r = await http.head(f"/api/v1/admin/devices/{dev.imei}/videos/a.mp4", headers=admin)
    assert r.status_code == 200
    r = await http.delete(f"/api/v1/admin/devices/{dev.imei}/videos/b.mp4", headers=admin)
    assert r.status_code == 204, r.text
    r = await http.get("/api/v1/admin/storage", headers=admin)
    assert r.status_code == 200 and r.json()["videos"]["count"] == 1

    r = await http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"}, headers=admin)
    assert r.status_code == 202
    frame = await ws.wait_for(lambda m: m["type"] == "command")
    await ws.send({"type": "command_result", "id": frame["id"], "ok": True})
    r = await http.get(f"/api/v1/admin/commands/{frame['id']}", params={"wait": 5}, headers=admin)
    assert r.json()["status"] == "succeeded"
    r = await http.get("/api/v1/admin/commands", params={"imei": dev.imei, "status": "succeeded"}, headers=admin)
    assert [c["id"] for c in r.json()["items"]] == [frame["id"]]
    ws.close()
    await ws.wait_closed()
    r = await http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"}, headers=admin)
    assert (await http.delete(f"/api/v1/admin/commands/{r.json()['id']}", headers=admin)).status_code == 200
    rotated = await http.post(f"/api/v1/admin/devices/{dev.imei}/secret", headers=admin)
    r = await http.get("/api/v1/admin/audit", params={"limit": 5}, headers=admin)
    assert r.status_code == 200 and r.json()["items"][0]["action"] == "device.rotate_secret"
    await http.post("/api/v1/device/login", json={"imei": dev.imei, "secret": "wrong"})

    # geofences and their transitions
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    r = await http.post("/api/v1/admin/geofences", json={"name": "depot", "geometry": square, "imeis": [dev.imei]},
                        headers=admin)
    assert r.status_code == 201, r.text
    fence = f"/api/v1/admin/geofences/{r.json()['id']}"
    assert (await http.get("/api/v1/admin/geofences", headers=admin)).status_code == 200
    assert (await http.get(fence, headers=admin)).status_code == 200
    r = await http.patch(fence, json={"geometry": {"type": "Circle", "center": [0.5, 0.5], "radius_m": 100}},
                         headers=admin)
    assert r.status_code == 200
    r = await http.get("/api/v1/admin/geofence-events", params={"imei": dev.imei}, headers=admin)
    assert r.status_code == 200
    assert (await http.delete(fence, headers=admin)).status_code == 204

    # videos: a real clip gets its metadata and thumbnail; the fleet-wide list
    clip = h264_mp4(2.0, 320, 240)
    dev.secret = rotated.json()["secret"]
    dh = {"Authorization": f"Bearer {await api.device_login(dev)}"}
    assert (await http.put("/api/v1/device/videos/clip.mp4", content=clip, headers=dh)).status_code == 201
    await wait_for_thumbnail(api, dev.imei, "clip.mp4", admin)
    await http.get(f"/api/v1/admin/devices/{dev.imei}/videos/a.mp4/thumbnail", headers=admin)  # 404: no video
    r = await http.get("/api/v1/admin/videos", params={"imei": dev.imei, "complete": "true"}, headers=admin)
    assert r.status_code == 200 and len(r.json()["items"]) == 2  # a.mp4 and clip.mp4 (b.mp4 was deleted)

    # the console and its browser session (httpx keeps the cookies)
    await http.get("/")
    await http.get("/static/app.js")
    await http.head("/static/app.js")
    r = await http.post("/api/v1/admin/session", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    assert (await http.get("/api/v1/admin/session")).status_code == 200
    r = await http.delete("/api/v1/admin/session", headers={"X-XSRFToken": http.cookies["_xsrf"]})
    assert r.status_code == 204
    assert (await http.get("/api/v1/admin/session")).status_code == 401

    checker: OpenApiChecker = api.openapi_checker  # type: ignore[attr-defined]
    succeeded = {(m, t) for m, t, status in checker.checked if 200 <= status < 300}
    every = set(doc_operations(openapi.document()))
    assert every - succeeded == set(), "operations the tour did not reach with a success"
    assert any(status == 401 for _m, _t, status in checker.checked)
