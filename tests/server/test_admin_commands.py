"""Admin commands: create for any registered device (queued while offline, delivered on connect),
status, and ``?wait=`` long-polling that returns as soon as the device answers."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.support import RunningServer, new_imei
from tests.server.support import make_user


async def test_queued_then_sent_then_succeeded_with_wait(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register()
    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/commands",
                            json={"command": "set_report_interval", "args": {"seconds": 15}}, headers=admin)
    assert r.status_code == 202
    cmd = r.json()
    assert cmd["status"] == "queued" and cmd["created_by"] == "admin" and cmd["args"] == {"seconds": 15}

    ws = await api.connect(dev)  # delivered on connect
    frame = await ws.wait_for(lambda m: m["type"] == "command")
    assert frame == {"type": "command", "id": cmd["id"], "command": "set_report_interval", "args": {"seconds": 15}}
    # the server marks it sent once the frame is written: the device may see the frame a moment before
    deadline = time.monotonic() + 10
    while (r := await api.http.get(f"/api/v1/admin/commands/{cmd['id']}", headers=admin)).json()["status"] == "queued":
        assert time.monotonic() < deadline, "the delivered command was not marked sent"
        await asyncio.sleep(0.02)
    assert r.json()["status"] == "sent" and r.json()["sent_at"]

    async def answer_later() -> None:
        await asyncio.sleep(0.5)
        await ws.send({"type": "command_result", "id": cmd["id"], "ok": True, "detail": "interval set"})

    started = time.monotonic()
    answer = asyncio.create_task(answer_later())
    r = await api.http.get(f"/api/v1/admin/commands/{cmd['id']}", params={"wait": 30}, headers=admin)
    took = time.monotonic() - started
    await answer
    assert r.status_code == 200
    assert r.json()["status"] == "succeeded" and r.json()["detail"] == "interval set" and r.json()["finished_at"]
    assert 0.4 < took < 10


async def test_online_device_gets_it_at_once_and_failure_is_reported(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register()
    ws = await api.connect(dev)
    await ws.send({"type": "ping"})
    await ws.wait_for(lambda m: m["type"] == "pong")
    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/commands",
                            json={"command": "request_video",
                                  "args": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:01:00Z"}},
                            headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "sent"
    frame = await ws.wait_for(lambda m: m["type"] == "command")
    await ws.send({"type": "command_result", "id": frame["id"], "ok": False, "detail": "no footage"})
    r = await api.http.get(f"/api/v1/admin/commands/{frame['id']}", params={"wait": 10}, headers=admin)
    assert r.json()["status"] == "failed" and r.json()["detail"] == "no footage"
    # final already: wait returns at once
    started = time.monotonic()
    r = await api.http.get(f"/api/v1/admin/commands/{frame['id']}", params={"wait": 60}, headers=admin)
    assert r.json()["status"] == "failed" and time.monotonic() - started < 2


async def test_wait_ends_after_the_given_seconds(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register(login=False)
    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"}, headers=admin)
    started = time.monotonic()
    r = await api.http.get(f"/api/v1/admin/commands/{r.json()['id']}", params={"wait": 1}, headers=admin)
    took = time.monotonic() - started
    assert r.status_code == 200 and r.json()["status"] == "queued" and 0.9 < took < 5


async def test_command_errors(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register(login=False)
    url = f"/api/v1/admin/devices/{dev.imei}/commands"
    for body, word in (({"command": "selfdestruct"}, "command"), ({"command": "set_report_interval"}, "seconds"),
                       ({"command": "reset", "ttl_s": 0}, "ttl_s"), ({"command": "reset", "args": "all"}, "args")):
        r = await api.http.post(url, json=body, headers=admin)
        assert r.status_code == 400 and word in r.json()["error"]["message"], body
    r = await api.http.post(f"/api/v1/admin/devices/{new_imei()}/commands", json={"command": "reset"}, headers=admin)
    assert r.status_code == 404
    r = await api.http.post("/api/v1/admin/devices/1234/commands", json={"command": "reset"}, headers=admin)
    assert r.status_code == 400
    r = await api.http.get(f"/api/v1/admin/commands/{uuid.uuid4()}", headers=admin)
    assert r.status_code == 404
    r = await api.http.get("/api/v1/admin/commands/not-an-id", headers=admin)
    assert r.status_code == 404
    r = await api.http.post(url, json={"command": "reset"}, headers=admin)
    for wait in ("61", "-1", "soon"):
        r2 = await api.http.get(f"/api/v1/admin/commands/{r.json()['id']}", params={"wait": wait}, headers=admin)
        assert r2.status_code == 400, wait

    viewer = await make_user(api, "vc", "viewer")
    r2 = await api.http.post(url, json={"command": "reset"}, headers=viewer)
    assert r2.status_code == 403 and "needs role admin" in r2.json()["error"]["message"]
    r2 = await api.http.get(f"/api/v1/admin/commands/{r.json()['id']}", headers=viewer)
    assert r2.status_code == 200


async def test_shutdown_releases_long_polls(server_factory) -> None:  # noqa: ANN001
    from tests.support import stop_server

    srv = await server_factory()
    admin = await srv.admin_headers()
    dev = await srv.register(login=False)
    r = await srv.http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"}, headers=admin)
    cmd_id = r.json()["id"]
    poll = asyncio.create_task(srv.http.get(f"/api/v1/admin/commands/{cmd_id}", params={"wait": 60}, headers=admin))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    srv.server.node.close_connections()  # what Server.stop does after the last flush
    r = await asyncio.wait_for(poll, 10)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert time.monotonic() - started < 3
    await stop_server(srv)
