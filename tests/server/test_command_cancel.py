"""Listing commands (``GET /api/v1/admin/commands``) and cancelling a queued one (``DELETE
/api/v1/admin/commands/{id}``): a cancelled command is final, ``?wait=`` returns on it, and it never
reaches the device, also when the cancel races the device connecting (delivery claims a command before
writing it, and the claim and the cancel are both conditional on ``queued``)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.support import RunningServer
from tests.server.support import events_socket


async def send(api: RunningServer, imei: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await api.http.post(f"/api/v1/admin/devices/{imei}/commands", json=body or {"command": "reset"},
                            headers=await api.admin_headers())
    assert r.status_code == 202, r.text
    return r.json()


async def cancel(api: RunningServer, command_id: str) -> Any:
    return await api.http.delete(f"/api/v1/admin/commands/{command_id}", headers=await api.admin_headers())


async def status_of(api: RunningServer, command_id: str) -> str:
    return (await api.probe.sql.commands.get(command_id))["status"]


async def becomes(api: RunningServer, command_id: str, status: str, timeout: float = 10.0) -> str:
    """Wait until the command has ``status`` (or the timeout); its status then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (now := await status_of(api, command_id)) != status and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return now


async def settled(api: RunningServer, ids: list[str], timeout: float = 10.0) -> dict[str, str]:
    """Wait until none of ``ids`` is queued any more; their statuses."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        statuses = {i: await status_of(api, i) for i in ids}
        if "queued" not in statuses.values() or loop.time() > deadline:
            return statuses
        await asyncio.sleep(0.02)


async def test_list_filters_and_pages_newest_first(api: RunningServer) -> None:
    admin = await api.admin_headers()
    one, two = await api.register(login=False), await api.register(login=False)
    made = []
    for i in range(5):
        made.append(await send(api, (one if i % 2 == 0 else two).imei))
    await cancel(api, made[0]["id"])
    r = await api.http.get("/api/v1/admin/commands", headers=admin)
    assert r.status_code == 200
    assert [c["id"] for c in r.json()["items"]] == [c["id"] for c in reversed(made)]
    first = await api.http.get("/api/v1/admin/commands", params={"limit": 2}, headers=admin)
    rest = await api.http.get("/api/v1/admin/commands", params={"cursor": first.json()["next_cursor"]}, headers=admin)
    assert [c["id"] for c in first.json()["items"] + rest.json()["items"]] == [c["id"] for c in reversed(made)]
    assert rest.json()["next_cursor"] is None
    r = await api.http.get("/api/v1/admin/commands", params={"imei": one.imei}, headers=admin)
    assert [c["id"] for c in r.json()["items"]] == [made[4]["id"], made[2]["id"], made[0]["id"]]
    r = await api.http.get("/api/v1/admin/commands", params=[("imei", one.imei), ("imei", two.imei),
                                                              ("status", "cancelled")], headers=admin)
    assert [c["id"] for c in r.json()["items"]] == [made[0]["id"]]
    r = await api.http.get("/api/v1/admin/commands", params={"status": "queued,cancelled", "imei": two.imei},
                           headers=admin)
    assert len(r.json()["items"]) == 2
    r = await api.http.get("/api/v1/admin/commands", params={"since": made[3]["created_at"]}, headers=admin)
    assert [c["id"] for c in r.json()["items"]] == [made[4]["id"], made[3]["id"]]
    r = await api.http.get("/api/v1/admin/commands", params={"until": made[1]["created_at"]}, headers=admin)
    assert [c["id"] for c in r.json()["items"]] == [made[0]["id"]]
    for params in ({"status": "lost"}, {"imei": "123"}, {"since": "soon"}, {"cursor": "xyz"}):
        r = await api.http.get("/api/v1/admin/commands", params=params, headers=admin)
        assert r.status_code == 400, params


async def test_cancel_a_queued_command_only(api: RunningServer) -> None:
    dev = await api.register()
    admin = await api.admin_headers()
    feed = await events_socket(api, admin)
    await feed.write_message(json.dumps({"type": "ping"}))
    assert json.loads(await feed.read_message()) == {"type": "pong"}
    queued = await send(api, dev.imei)
    poll = asyncio.create_task(api.http.get(f"/api/v1/admin/commands/{queued['id']}", params={"wait": 30},
                                            headers=admin))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    r = await cancel(api, queued["id"])
    assert r.status_code == 200
    done = r.json()
    assert done["status"] == "cancelled" and done["finished_at"] and done["id"] == queued["id"]
    waited = await asyncio.wait_for(poll, 10)  # ?wait= returns on a cancel: it is a final status
    assert waited.json()["status"] == "cancelled" and time.monotonic() - started < 5
    statuses = []
    while "cancelled" not in statuses:
        event = json.loads(await asyncio.wait_for(feed.read_message(), 5))
        if event["type"] == "command_status" and event["command"]["id"] == queued["id"]:
            statuses.append(event["command"]["status"])
    assert statuses == ["queued", "cancelled"]
    feed.close()

    r = await cancel(api, queued["id"])
    assert r.status_code == 409 and r.json()["error"]["status"] == "cancelled"
    assert "queued" in r.json()["error"]["message"]
    ws = await api.connect(dev)
    sent = await send(api, dev.imei)
    await ws.wait_for(lambda m: m["type"] == "command" and m["id"] == sent["id"])
    r = await cancel(api, sent["id"])
    assert r.status_code == 409 and r.json()["error"]["status"] == "sent"
    assert (await cancel(api, "not-a-command")).status_code == 404
    assert (await cancel(api, "6f1c7a57-4a44-4e38-9f4f-3c0e8f1d2b3a")).status_code == 404
    # the cancelled one never came; only the later one did
    assert [m["id"] for m in ws.received if m["type"] == "command"] == [sent["id"]]


async def test_cancelled_commands_are_skipped_when_the_device_connects(api: RunningServer) -> None:
    dev = await api.register()
    made = [await send(api, dev.imei, {"command": "set_report_interval", "args": {"seconds": i + 1}})
            for i in range(4)]
    for c in made[::2]:
        assert (await cancel(api, c["id"])).status_code == 200
    ws = await api.connect(dev)
    got = [await ws.wait_for(lambda m: m["type"] == "command") for _ in range(2)]
    assert [g["id"] for g in got] == [made[1]["id"], made[3]["id"]]
    await ws.send({"type": "ping"})
    await ws.wait_for(lambda m: m["type"] == "pong")
    assert [m["id"] for m in ws.received if m["type"] == "command"] == [made[1]["id"], made[3]["id"]]


async def test_cancel_between_the_queue_read_and_the_write_wins(api: RunningServer) -> None:
    """Delivery read the queue, then the commands are cancelled before it writes them: none is written
    (with a write before the claim, every one of them reached the device)."""
    dev = await api.register()
    made = [await send(api, dev.imei) for _ in range(4)]
    rows = api.probe.sql.commands
    read_done, release = asyncio.Event(), asyncio.Event()
    queued = rows.queued

    async def paused(imei: str, now: Any) -> list[dict[str, Any]]:
        batch = await queued(imei, now)
        if imei == dev.imei:
            read_done.set()
            await release.wait()
        return batch

    rows.queued = paused
    try:
        connecting = asyncio.create_task(api.connect(dev))
        await asyncio.wait_for(read_done.wait(), 10)
        for c in made[:3]:
            assert (await cancel(api, c["id"])).status_code == 200
        release.set()
        ws = await asyncio.wait_for(connecting, 10)
    finally:
        del rows.queued
    got = await ws.wait_for(lambda m: m["type"] == "command")
    assert got["id"] == made[3]["id"]
    await ws.send({"type": "ping"})
    await ws.wait_for(lambda m: m["type"] == "pong")
    assert [m["id"] for m in ws.received if m["type"] == "command"] == [made[3]["id"]]
    assert [await status_of(api, c["id"]) for c in made] == ["cancelled"] * 3 + ["sent"]


async def test_cancel_racing_a_connecting_device(api: RunningServer) -> None:
    """Connect and cancel at once, over and over: every command either was cancelled (200) and never
    reached the device, or was sent (409 to the cancel) and did reach it."""
    for _round in range(5):
        dev = await api.register()
        made = [await send(api, dev.imei) for _ in range(6)]
        results = await asyncio.gather(api.connect(dev), *(cancel(api, c["id"]) for c in made))
        ws, answers = results[0], results[1:]
        statuses = await settled(api, [c["id"] for c in made])
        await ws.send({"type": "ping"})
        await ws.wait_for(lambda m: m["type"] == "pong")
        received = {m["id"] for m in ws.received if m["type"] == "command"}
        for c, r in zip(made, answers):
            if r.status_code == 200:
                assert statuses[c["id"]] == "cancelled" and c["id"] not in received
            else:
                assert r.status_code == 409 and r.json()["error"]["status"] == "sent"
                assert statuses[c["id"]] == "sent" and c["id"] in received
        ws.close()


async def test_a_claim_whose_write_fails_goes_back_to_the_queue(api: RunningServer) -> None:
    """The connection goes away between the claim and the write: the command is queued again (and can
    be cancelled, or is delivered on the next connection)."""
    dev = await api.register()
    made = await send(api, dev.imei)
    seen: list[str] = []
    unsubscribe = api.probe.subscribe(
        lambda e: seen.append(e["command"]["status"]) if e.get("command", {}).get("id") == made["id"] else None)
    rows = api.probe.sql.commands
    mark_sent = rows.mark_sent

    async def then_disconnect(command_id: str, now: Any) -> bool:
        claimed = await mark_sent(command_id, now)
        await api.probe.set_enabled(dev.imei, False)  # closes the device's socket on this process
        return claimed

    rows.mark_sent = then_disconnect
    try:
        ws = await api.connect(dev)
        assert await ws.wait_closed() == 4403
    finally:
        del rows.mark_sent
    assert await becomes(api, made["id"], "queued") == "queued"
    assert not [m for m in ws.received if m["type"] == "command"]
    await api.probe.set_enabled(dev.imei, True)
    ws = await api.connect(dev)
    got = await ws.wait_for(lambda m: m["type"] == "command")
    assert got["id"] == made["id"] and await status_of(api, made["id"]) == "sent"
    unsubscribe()
    assert seen == ["sent", "queued", "sent"]  # the events tell the same story as the row


async def test_sent_comes_before_the_answer_on_the_bus(api: RunningServer) -> None:
    """The device answers the moment it gets the command: the claim was published before the write,
    so every command's events read queued, sent, succeeded in that order."""
    dev = await api.register()
    ws = await api.connect(dev)
    events: list[dict[str, Any]] = []
    unsubscribe = api.probe.subscribe(lambda e: events.append(e["command"]) if e["type"] == "command_status" else None)
    ids = []
    for _ in range(10):
        ids.append((await send(api, dev.imei))["id"])
        frame = await ws.wait_for(lambda m: m["type"] == "command")
        await ws.send({"type": "command_result", "id": frame["id"], "ok": True})
    deadline = asyncio.get_running_loop().time() + 10
    while len(events) < 30 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    unsubscribe()
    for command_id in ids:
        assert [e["status"] for e in events if e["id"] == command_id] == ["queued", "sent", "succeeded"]
        assert await status_of(api, command_id) == "succeeded"  # its last event came after its commit
