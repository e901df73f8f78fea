"""Geofences over the real server: fences through the admin API (validated, audited, admin-only changes),
transitions computed from the points devices stream over the WebSocket in ``ts`` order per device (resent
and out-of-order batches give exactly the true transitions), published on the events feed and written to
the webhook outbox, per-device fences, state kept across a restart, catch-up from the store when the
evaluation queue is full."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from pyproj import Geod

from tests.server.support import events_socket, make_user
from tests.support import RunningServer, new_imei, stop_server
from truckx_server.models import format_time, utcnow
from truckx_server.storage.sql.schema import outbox

GEOD = Geod(ellps="WGS84")
T0 = (utcnow() - dt.timedelta(hours=2)).replace(microsecond=0)

#: a square of about 11 km around (13.05, 52.05), and one far away
SQUARE = {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1], [13.0, 52.0]]]}
IN, OUT = (52.05, 13.05), (52.2, 13.05)


def ts(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def point(seconds: float, where: tuple[float, float]) -> dict[str, Any]:
    return {"ts": format_time(ts(seconds)), "lat": where[0], "lon": where[1]}


async def create(api: RunningServer, geometry: dict[str, Any], name: str = "depot", imeis: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "geometry": geometry}
    if imeis is not None:
        body["imeis"] = imeis
    r = await api.http.post("/api/v1/admin/geofences", json=body, headers=headers or await api.admin_headers())
    assert r.status_code == 201, r.text
    return r.json()


async def transitions(api: RunningServer, **params: Any) -> list[tuple[str, str, str]]:
    """Every transition matching ``params``, oldest first, as (imei, transition, ts)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = await api.http.get("/api/v1/admin/geofence-events", params={**params, "limit": 2,
                                                                        **({"cursor": cursor} if cursor else {})},
                               headers=await api.admin_headers())
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    return [(e["imei"], e["transition"], e["ts"]) for e in reversed(items)]


class Streamer:
    """A device's socket that sends batches and waits for their ack."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seq = 0

    async def send(self, *points: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send({"type": "locations", "seq": self.seq, "points": list(points)})
        await self.ws.wait_ack(self.seq)


async def stream(api: RunningServer, imei: str | None = None) -> tuple[str, Streamer]:
    device = await api.register(imei)
    return device.imei, Streamer(await api.connect(device))


def at(seconds: float) -> str:
    return format_time(ts(seconds))  # type: ignore[return-value]


async def test_resent_and_out_of_order_batches_give_exactly_the_true_transitions(api: RunningServer) -> None:
    fence = await create(api, SQUARE)
    feed = await events_socket(api, await api.admin_headers())
    imei, dev = await stream(api)
    await dev.send(point(1, OUT), point(2, IN), point(3, IN), point(4, OUT))
    await api.probe.geofences_evaluated()
    truth = [(imei, "enter", at(2)), (imei, "exit", at(4))]
    assert await transitions(api) == truth

    # the same batch again, a late point older than the newest evaluated one, a point repeated
    await dev.send(point(1, OUT), point(2, IN), point(3, IN), point(4, OUT))
    await dev.send(point(3.5, IN), point(4, IN))
    # out of order within a batch, and across batches: 5 out, 6 in, 7 in, then 9 out before 8 out
    await dev.send(point(7, IN), point(5, OUT), point(6, IN))
    await dev.send(point(9, OUT), point(8, OUT))
    await api.probe.geofences_evaluated()
    truth += [(imei, "enter", at(6)), (imei, "exit", at(8))]
    assert await transitions(api) == truth

    # the feed carried each transition once, in order
    seen = []
    while len(seen) < len(truth):
        event = json.loads(await feed.read_message())
        if event["type"] == "geofence":
            e = event["geofence_event"]
            assert event["imei"] == imei and e["geofence_id"] == fence["id"]
            seen.append((e["imei"], e["transition"], e["ts"]))
    assert seen == truth
    feed.close()

    # and the webhook outbox has each one, with the point on the new side
    rows = [{**r, "data": json.loads(r["data"])} for r in await api.probe.sql.db.all(sa.select(outbox).order_by(outbox.c.id))]
    mine = [r for r in rows if r["type"].startswith("geofence.") and r["data"].get("imei") == imei]
    assert [(r["type"], r["data"]["ts"]) for r in mine] == [
        ("geofence.enter", at(2)), ("geofence.exit", at(4)), ("geofence.enter", at(6)), ("geofence.exit", at(8))]
    assert (mine[0]["data"]["lat"], mine[0]["data"]["lon"]) == IN


async def test_first_point_inside_is_an_enter_and_per_device_fences(api: RunningServer) -> None:
    a, b = new_imei(), new_imei()
    only_a = await create(api, SQUARE, "only a", imeis=[a])
    imei_a, dev_a = await stream(api, a)
    imei_b, dev_b = await stream(api, b)
    await dev_a.send(point(1, IN), point(2, IN))
    await dev_b.send(point(1, IN), point(2, OUT))
    await api.probe.geofences_evaluated()
    assert await transitions(api) == [(a, "enter", at(1))]
    assert await transitions(api, geofence_id=only_a["id"], imei=b) == []

    # now for every device: b's next point is evaluated (its first inside is an enter)
    r = await api.http.patch(f"/api/v1/admin/geofences/{only_a['id']}", json={"imeis": None},
                             headers=await api.admin_headers())
    assert r.status_code == 200 and r.json()["imeis"] is None
    await dev_b.send(point(3, IN))
    await api.probe.geofences_evaluated()
    assert await transitions(api, imei=b) == [(b, "enter", at(3))]
    # back to a only: a device it no longer applies to leaves no exit behind
    await api.http.patch(f"/api/v1/admin/geofences/{only_a['id']}", json={"imeis": [a]}, headers=await api.admin_headers())
    await dev_b.send(point(4, OUT), point(5, IN))
    await api.probe.geofences_evaluated()
    assert await transitions(api, imei=b) == [(b, "enter", at(3))]


async def test_circles_near_the_edge_and_multipolygons_with_holes(api: RunningServer) -> None:
    center = (13.4, 52.5)
    circle = await create(api, {"type": "Circle", "center": list(center), "radius_m": 1000}, "circle")
    # positions 998 m and 1002 m from the center, to the north-east (geodesic, on WGS84)
    lon_in, lat_in, _ = GEOD.fwd(center[0], center[1], 45, 998)
    lon_out, lat_out, _ = GEOD.fwd(center[0], center[1], 45, 1002)
    outer = [[20.0, 10.0], [20.2, 10.0], [20.2, 10.2], [20.0, 10.2], [20.0, 10.0]]
    hole = [[20.05, 10.05], [20.15, 10.05], [20.15, 10.15], [20.05, 10.15], [20.05, 10.05]]
    far = [[30.0, 10.0], [30.1, 10.0], [30.1, 10.1], [30.0, 10.1], [30.0, 10.0]]
    multi = await create(api, {"type": "MultiPolygon", "coordinates": [[outer, hole], [far]]}, "multi")
    assert multi["geometry"]["coordinates"][0][1] == hole

    imei, dev = await stream(api)
    await dev.send(point(1, (lat_out, lon_out)), point(2, (lat_in, lon_in)), point(3, (lat_out, lon_out)))
    await dev.send(point(4, (10.01, 20.01)), point(5, (10.1, 20.1)), point(6, (10.05, 30.05)),
                   point(7, (10.2, 20.1)))  # in the ring, in the hole, in the far part, on the outer boundary
    await api.probe.geofences_evaluated()
    assert await transitions(api, geofence_id=circle["id"]) == [(imei, "enter", at(2)), (imei, "exit", at(3))]
    assert await transitions(api, geofence_id=multi["id"]) == [
        (imei, "enter", at(4)), (imei, "exit", at(5)), (imei, "enter", at(6))]


async def test_state_is_kept_across_a_restart(server_factory: Any, tmp_path: Any) -> None:
    first = await server_factory()
    fence = await create(first, SQUARE)
    device = await first.register()
    dev = Streamer(await first.connect(device))
    await dev.send(point(1, OUT), point(2, IN), point(3, IN))
    await first.probe.geofences_evaluated()
    await stop_server(first)

    again = await server_factory(data_dir=first.settings.data_dir)
    dev = Streamer(await again.connect(await again.device_login(device)))
    # the device resends what it had, and a late point: nothing new; then it leaves
    await dev.send(point(1, OUT), point(2, IN), point(3, IN), point(2.5, OUT))
    await dev.send(point(4, OUT))
    await again.probe.geofences_evaluated()
    assert await transitions(again, geofence_id=fence["id"]) == [(device.imei, "enter", at(2)),
                                                                (device.imei, "exit", at(4))]


async def test_points_acknowledged_but_not_evaluated_before_a_crash_are_caught_up_at_start(
        server_factory: Any) -> None:
    first = await server_factory()
    fence = await create(first, SQUARE)
    device = await first.register()
    dev = Streamer(await first.connect(device))
    await dev.send(point(1, OUT), point(2, IN))
    await first.probe.geofences_evaluated()
    await first.probe.stop_geofence_evaluator()  # as if the process died right after the next acks
    await dev.send(point(3, IN), point(4, OUT))
    assert len(await first.probe.stored_points(device.imei)) == 4
    await stop_server(first)

    again = await server_factory(data_dir=first.settings.data_dir)
    await again.probe.geofences_evaluated()
    assert await transitions(again, geofence_id=fence["id"]) == [(device.imei, "enter", at(2)),
                                                                (device.imei, "exit", at(4))]


async def test_a_full_queue_is_caught_up_from_the_store(api: RunningServer) -> None:
    await create(api, SQUARE)
    api.probe.geofence_evaluator.queue_points = 1  # every batch of more than one point is deferred
    imei, dev = await stream(api)
    await dev.send(point(1, OUT), point(2, IN))
    await dev.send(point(3, IN), point(4, OUT))
    await dev.send(point(5, IN))  # one point fits the queue while the device waits for its catch-up
    await api.probe.geofences_evaluated()
    assert await transitions(api) == [(imei, "enter", at(2)), (imei, "exit", at(4)), (imei, "enter", at(5))]
    assert api.probe.geofence_evaluator.queued_points == 0
    metrics = (await api.http.get("/metrics")).text
    assert "truckx_geofence_points_deferred_total 4.0" in metrics  # the two batches of two points


async def test_fences_crud_audit_and_roles(api: RunningServer) -> None:
    admin = await api.admin_headers()
    viewer = await make_user(api, "vic", "viewer")
    operator = await make_user(api, "opie", "operator")
    body = {"name": "yard", "geometry": SQUARE}
    for who in (viewer, operator):
        r = await api.http.post("/api/v1/admin/geofences", json=body, headers=who)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    fences = [await create(api, SQUARE, f"f{i}") for i in range(3)]
    assert fences[0]["created_by"] == "admin" and fences[0]["geometry"] == SQUARE and fences[0]["imeis"] is None

    listed, cursor = [], None
    while True:
        r = await api.http.get("/api/v1/admin/geofences", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                               headers=viewer)
        assert r.status_code == 200
        listed += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert [f["id"] for f in listed] == [f["id"] for f in fences]
    one = f"/api/v1/admin/geofences/{fences[0]['id']}"
    assert (await api.http.get(one, headers=operator)).json()["name"] == "f0"
    assert (await api.http.get("/api/v1/admin/geofence-events", headers=viewer)).status_code == 200
    for method in ("patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "patch" else {}
        r = await getattr(api.http, method)(one, headers=viewer, **kwargs)
        assert r.status_code == 403

    r = await api.http.patch(one, json={"name": "renamed", "geometry": {"type": "Circle", "center": [1, 2],
                                                                        "radius_m": 50}}, headers=admin)
    assert r.status_code == 200 and r.json()["name"] == "renamed" and r.json()["geometry"]["type"] == "Circle"
    assert r.json()["updated_at"] >= r.json()["created_at"]
    assert (await api.http.delete(one, headers=admin)).status_code == 204
    for method in ("get", "delete"):
        r = await getattr(api.http, method)(one, headers=admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.http.get("/api/v1/admin/geofences/not-a-uuid", headers=admin)
    assert r.status_code == 404

    r = await api.http.get("/api/v1/admin/audit", params={"target": fences[0]["id"]}, headers=admin)
    assert [(e["action"], e["actor"]) for e in r.json()["items"]] == [
        ("geofence.delete", "admin"), ("geofence.update", "admin"), ("geofence.create", "admin")]


def ring(*points: tuple[float, float]) -> list[list[float]]:
    return [list(p) for p in points]


BAD_GEOMETRIES = [
    ({"type": "Point", "coordinates": [1, 2]}, "geometry.type"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0.5]]]}, "closed"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "at least 4"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "not a valid Polygon"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [181, 0], [1, 1], [0, 0]]]}, "longitude"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 91], [0, 0]]]}, "latitude"),
    ({"type": "Polygon", "coordinates": [[[0, 0], ["1", 0], [1, 1], [0, 0]]]}, "finite number"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [True, 0], [1, 1], [0, 0]]]}, "finite number"),
    ({"type": "Polygon", "coordinates": [[[-170, 0], [170, 0], [170, 1], [-170, 0]]]}, "180 degrees"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}, "not a valid"),
    ({"type": "Polygon", "coordinates": [[[0, 0]] * 5001 + [[1, 0]] * 5000 + [[0, 0]]]}, "at most 10000 positions"),
    ({"type": "Polygon", "coordinates": []}, "linear rings"),
    ({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[0.5, 0], [1.5, 0], [1.5, 1],
                                                                                 [0.5, 0]]]]}, "not a valid"),
    ({"type": "Circle", "center": [13, 52], "radius_m": 0}, "radius_m"),
    ({"type": "Circle", "center": [13, 52], "radius_m": 2_000_000}, "radius_m"),
    ({"type": "Circle", "center": [13, 95], "radius_m": 100}, "latitude"),
    ({"type": "Circle", "center": [13], "radius_m": 100}, "position"),
    ("Polygon", "JSON object"),
]


@pytest.mark.parametrize("geometry, message", BAD_GEOMETRIES, ids=[m for _, m in BAD_GEOMETRIES])
async def test_invalid_geometries_are_400_with_the_error_body(api: RunningServer, geometry: Any, message: str) -> None:
    r = await api.http.post("/api/v1/admin/geofences", json={"name": "bad", "geometry": geometry},
                            headers=await api.admin_headers())
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_argument" and message in error["message"], error


async def test_other_invalid_bodies_and_filters(api: RunningServer) -> None:
    admin = await api.admin_headers()
    post = "/api/v1/admin/geofences"
    for body in ({"geometry": SQUARE}, {"name": "", "geometry": SQUARE}, {"name": "x" * 129, "geometry": SQUARE},
                 {"name": "x", "geometry": SQUARE, "imeis": []}, {"name": "x", "geometry": SQUARE, "imeis": ["123"]},
                 {"name": "x", "geometry": SQUARE, "imeis": "all"}, [1]):
        r = await api.http.post(post, json=body, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument", (body, r.text)
    r = await api.http.post(post, content=b"{nope", headers=admin)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    fence = await create(api, SQUARE)
    r = await api.http.patch(f"{post}/{fence['id']}", json={}, headers=admin)
    assert r.status_code == 400 and "nothing to change" in r.json()["error"]["message"]
    r = await api.http.patch(f"{post}/{fence['id']}", json={"geometry": {"type": "Circle"}}, headers=admin)
    assert r.status_code == 400
    for params in ({"imei": "123"}, {"geofence_id": "nope"}, {"since": "yesterday"}, {"cursor": "!!"}):
        r = await api.http.get("/api/v1/admin/geofence-events", params=params, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument", params
