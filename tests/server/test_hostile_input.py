"""Input an attacker or a broken client sends, over real HTTP and the real device WebSocket: times that
overflow once converted to UTC, JSON nested without bound, JSON that is not RFC 8259 (NaN, lone
surrogates), and the methods a route does not have. Each gets a 4xx with the contract's error body
(or an ``error`` frame on the socket), never a 500 or a dropped connection."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
from typing import Any

import pytest

from tests.server.support import HTTP_METHODS, events_socket, report_alarm, route_table
from tests.support import RunningServer, new_imei

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)
#: each exists only in its own offset: in UTC the first is in year 0, the second in year 10000
OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


def ts(i: int) -> str:
    return (T0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def point(i: int) -> dict[str, Any]:
    return {"ts": ts(i), "lat": 48.0 + i * 1e-4, "lon": 11.0 + i * 1e-4}


def cursor_of(*key: Any) -> str:
    """A cursor as the server makes them (urlsafe base64 of the JSON key, unpadded)."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def assert_error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:200]}"
    assert r.json()["error"]["code"] == code, r.text[:200]


# -- times -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", OVERFLOWING)
async def test_times_overflowing_in_utc_are_400_everywhere(api: RunningServer, value: str) -> None:
    dev = await api.register()
    admin = await api.admin_headers()
    device = {"Authorization": f"Bearer {dev.token}"}
    track = f"/api/v1/admin/devices/{dev.imei}/locations"
    for name in ("since", "until"):
        assert_error(await api.http.get(track, params={name: value}, headers=admin), 400, "invalid_argument")
        assert_error(await api.http.get("/api/v1/admin/alarms", params={name: value}, headers=admin),
                     400, "invalid_argument")
    # cursors carry times too: one made by hand with such a time is just an invalid cursor
    assert_error(await api.http.get(track, params={"cursor": cursor_of(value)}, headers=admin),
                 400, "invalid_argument")
    assert_error(await api.http.get("/api/v1/admin/alarms", params={"cursor": cursor_of(value, "x")},
                                    headers=admin), 400, "invalid_argument")
    r = await api.http.post("/api/v1/device/alarms", json={"type": "CRASH", "ts": value, "lat": 1, "lon": 2},
                            headers=device)
    assert_error(r, 400, "invalid_argument")
    for args in ({"from": value, "to": "2026-01-01T00:00:00Z"}, {"from": "2026-01-01T00:00:00Z", "to": value}):
        r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/commands",
                                json={"command": "request_video", "args": args}, headers=admin)
        assert_error(r, 400, "invalid_argument")


async def test_the_extreme_times_that_do_exist_are_answered(api: RunningServer) -> None:
    """Year 1 and year 9999 in UTC are valid bounds on every store (MariaDB DATETIME, BSON dates)."""
    dev = await api.register()
    admin = await api.admin_headers()
    alarm = await report_alarm(api, dev)
    bounds = {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59.999999Z"}
    r = await api.http.get("/api/v1/admin/alarms", params={**bounds, "imei": dev.imei}, headers=admin)
    assert r.status_code == 200 and [a["id"] for a in r.json()["items"]] == [alarm["id"]]
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params=bounds, headers=admin)
    assert r.status_code == 200 and r.json()["items"] == []
    # a cursor at the very start of time is a cursor like any other
    r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations",
                           params={"cursor": cursor_of("0001-01-01T00:00:00Z")}, headers=admin)
    assert r.status_code == 200


async def test_an_empty_time_argument_is_refused(api: RunningServer) -> None:
    dev = await api.register()
    admin = await api.admin_headers()
    for name in ("since", "until"):
        r = await api.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params={name: ""}, headers=admin)
        assert_error(r, 400, "invalid_argument")
        r = await api.http.get("/api/v1/admin/alarms", params={name: ""}, headers=admin)
        assert_error(r, 400, "invalid_argument")


# -- JSON --------------------------------------------------------------------------------------------


async def test_deeply_nested_json_is_invalid_json(api: RunningServer) -> None:
    dev = await api.register()
    device = {"Authorization": f"Bearer {dev.token}"}
    admin = await api.admin_headers()
    # (login bodies are bounded too, 16 KiB for admins and 4 KiB for devices: past that it is 413)
    r = await api.http.post("/api/v1/admin/login", content=b"[" * 16_000)
    assert_error(r, 400, "invalid_json")
    r = await api.http.post("/api/v1/device/login", content=b"{\"a\":" * 800)
    assert_error(r, 400, "invalid_json")
    r = await api.http.post("/api/v1/admin/devices", content=b"[" * 100_000, headers=admin)
    assert_error(r, 400, "invalid_json")
    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/commands",
                            content=b'{"command":"reset","args":' + b"[" * 5000 + b"]" * 5000 + b"}", headers=admin)
    assert_error(r, 400, "invalid_json")

    def nested(depth: int) -> Any:
        value: Any = "leaf"
        for i in range(depth):
            value = {"k": value} if i % 2 else [value]
        return value

    alarm = {"type": "CRASH", "ts": "2026-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0}
    # the bound is 32 levels in all, counting the body itself: details at depth 31 is the most there is
    r = await api.http.post("/api/v1/device/alarms", json={**alarm, "details": {"d": nested(30)}}, headers=device)
    assert r.status_code == 201, r.text
    assert r.json()["details"] == {"d": nested(30)}
    r = await api.http.post("/api/v1/device/alarms", json={**alarm, "details": {"d": nested(31)}}, headers=device)
    assert_error(r, 400, "invalid_json")
    # a cursor is a flat list: anything nested in it is not one of ours
    r = await api.http.get("/api/v1/admin/devices", params={"cursor": cursor_of(["x"])}, headers=admin)
    assert_error(r, 400, "invalid_argument")
    r = await api.http.get("/api/v1/admin/devices",
                           params={"cursor": base64.urlsafe_b64encode(b"[" * 300).decode().rstrip("=")},
                           headers=admin)
    assert_error(r, 400, "invalid_argument")


async def test_json_that_is_not_rfc_8259_is_refused(api: RunningServer) -> None:
    dev = await api.register()
    device = {"Authorization": f"Bearer {dev.token}"}
    admin = await api.admin_headers()
    alarm = '{"type":"CRASH","ts":"2026-01-01T00:00:00Z","lat":1,"lon":2,"details":{"x":%s}}'
    for constant in ("NaN", "Infinity", "-Infinity"):
        r = await api.http.post("/api/v1/device/alarms", content=(alarm % constant).encode(), headers=device)
        assert_error(r, 400, "invalid_json")
    # a number past the range of a double is valid JSON, but no JSON can carry it back out
    r = await api.http.post("/api/v1/device/alarms", content=(alarm % "1e400").encode(), headers=device)
    assert_error(r, 400, "invalid_argument")
    # a lone surrogate cannot be stored (the databases want UTF-8) nor sent on
    for body in (b'{"imei": "%s", "name": "\\ud800"}' % dev.imei.encode(),
                 b'{"imei": "%s", "name": "a\\udfffb"}' % dev.imei.encode()):
        r = await api.http.post("/api/v1/admin/devices", content=body, headers=admin)
        assert_error(r, 400, "invalid_json")
    r = await api.http.post("/api/v1/admin/devices", content=b'{"imei":"123","name":"\xff"}', headers=admin)
    assert_error(r, 400, "invalid_json")
    # a surrogate pair is just a character
    r = await api.http.post("/api/v1/admin/devices", content=b'{"imei": "%s", "name": "\\ud83d\\ude9a"}'
                            % new_imei().encode(), headers=admin)
    assert r.status_code == 201 and r.json()["name"] == "\U0001f69a"


# -- methods -----------------------------------------------------------------------------------------


async def test_every_405_lists_the_allowed_methods(server: RunningServer) -> None:
    admin = await server.admin_headers()
    for _pattern, template, cls in route_table():
        path = re.sub(r"\{[^}]*\}", "x", template)
        for method in (*HTTP_METHODS, "TRACE"):
            if method in cls.roles:
                continue
            r = await server.http.request(method, path, headers=admin)
            assert r.status_code == 405, f"{method} {template}: {r.status_code}"
            assert r.headers.get("Allow") == ", ".join(cls.roles), f"{method} {template}: {r.headers}"
            if method != "HEAD":
                assert r.json()["error"]["code"] == "method_not_allowed"
    # a path no route matches: the catch-all lists what it answers (with a 404)
    r = await server.http.request("TRACE", "/no/such/path")
    assert r.status_code == 405 and "GET" in r.headers["Allow"].split(", ")


# -- the device WebSocket ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad_ts", [*OVERFLOWING, "2026-13-01T00:00:00Z", "+10000-01-01T00:00:00Z"])
async def test_one_bad_time_among_good_points_is_named_and_the_rest_is_stored(server: RunningServer,
                                                                               bad_ts: str) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    points = [point(i) for i in range(1000)]
    points[500] = {**points[500], "ts": bad_ts}
    await ws.send({"type": "locations", "seq": 41, "points": points})
    err = await ws.wait_for(lambda m: m["type"] == "error")
    assert err["seq"] == 41 and err["code"] == "invalid_argument"
    assert [r["index"] for r in err["rejected"]] == [500]
    assert (await ws.wait_ack(41)) == {"type": "ack", "seq": 41}
    stored = await server.probe.stored_points(dev.imei)
    assert len(stored) == 999 and T0 + dt.timedelta(seconds=500) not in {p.ts for p in stored}
    # the session goes on
    await ws.send({"type": "ping"})
    assert await ws.wait_for(lambda m: m["type"] == "pong") == {"type": "pong"}


async def test_hostile_frames_get_error_frames_and_the_session_stays_open(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    frames = [
        ("[" * 100_000, "invalid_json"),
        ('{"type":"ping","x":' + "[" * 40 + "]" * 40 + "}", "invalid_json"),
        ('{"type":"location","seq":1,"ts":"%s","lat":NaN,"lon":1}' % ts(0), "invalid_json"),
        ('{"type":"command_result","id":"\\udc00","ok":true}', "invalid_json"),
        ('{"type":"location","seq":1e999,"ts":"%s","lat":1,"lon":1}' % ts(0), "invalid_argument"),
        ('{"type":"location","seq":%d,"ts":"%s","lat":1,"lon":1}' % (2**64, ts(0)), "invalid_argument"),
    ]
    for frame, code in frames:
        await ws.send(frame)
        err = await ws.wait_for(lambda m: m["type"] == "error")
        assert err["code"] == code, frame[:60]
    await ws.send({"type": "location", "seq": 2, **point(0)})
    assert await ws.wait_ack(2) == {"type": "ack", "seq": 2}
    assert len(await server.probe.stored_points(dev.imei)) == 1


async def test_the_events_feed_ignores_hostile_frames_and_still_answers_ping(server: RunningServer) -> None:
    conn = await events_socket(server, await server.admin_headers())
    try:
        for frame in ("[" * 100_000, '{"type":' + "[" * 40 + "]" * 40 + "}", "NaN", b"\xff\xfe"):
            await conn.write_message(frame, binary=isinstance(frame, bytes))
        await conn.write_message(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(conn.read_message(), 10)) == {"type": "pong"}
    finally:
        conn.close()
