"""Command delivery through the durable queue: online, offline, TTL, results, restarts.

Commands are created through ``probe.send_command`` (what the admin endpoint calls) and received by
a real device WebSocket."""

from __future__ import annotations

import asyncio

from tests.support import RunningServer, ServerFactory
from truckx_server.models import utcnow


async def wait_status(server: RunningServer, command_id: str, status: str, timeout: float = 5.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        cmd = await server.probe.sql.commands.get(command_id)
        if cmd["status"] == status or loop.time() > deadline:
            return cmd
        await asyncio.sleep(0.02)


async def test_online_device_gets_command_at_once_and_result_finishes_it(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    created = await server.probe.send_command(dev.imei, {"command": "reset"}, "admin")
    assert created["status"] == "sent" and created["sent_at"]
    frame = await ws.wait_for(lambda m: m["type"] == "command")
    assert frame == {"type": "command", "id": created["id"], "command": "reset", "args": {}}
    await ws.send({"type": "command_result", "id": created["id"], "ok": True, "detail": "rebooting"})
    done = await wait_status(server, created["id"], "succeeded")
    assert done["status"] == "succeeded" and done["detail"] == "rebooting" and done["finished_at"]
    # a repeated result changes nothing
    await ws.send({"type": "command_result", "id": created["id"], "ok": False})
    await ws.send({"type": "ping"})
    await ws.wait_for(lambda m: m["type"] == "pong")
    assert (await server.probe.sql.commands.get(created["id"]))["status"] == "succeeded"


async def test_failed_result(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    created = await server.probe.send_command(dev.imei, {"command": "set_report_interval", "args": {"seconds": 30}},
                                                 "admin")
    frame = await ws.wait_for(lambda m: m["type"] == "command")
    assert frame["args"] == {"seconds": 30}
    await ws.send({"type": "command_result", "id": created["id"], "ok": False, "detail": "unsupported"})
    assert (await wait_status(server, created["id"], "failed"))["status"] == "failed"


async def test_command_queued_offline_arrives_on_connect_in_order(server: RunningServer) -> None:
    dev = await server.register()
    first = await server.probe.send_command(dev.imei, {"command": "reset"}, "admin")
    second = await server.probe.send_command(dev.imei, {"command": "set_report_interval", "args": {"seconds": 5}},
                                                "admin")
    assert first["status"] == second["status"] == "queued"
    ws = await server.connect(dev)
    got = [await ws.wait_for(lambda m: m["type"] == "command") for _ in range(2)]
    assert [g["id"] for g in got] == [first["id"], second["id"]]
    assert (await wait_status(server, first["id"], "sent"))["status"] == "sent"
    # a reconnect does not deliver them again
    ws.close()
    ws2 = await server.connect(dev)
    await ws2.send({"type": "ping"})
    await ws2.wait_for(lambda m: m["type"] == "pong")
    await asyncio.sleep(0.1)
    assert not [m for m in ws2.received if m["type"] == "command"]


async def test_command_past_its_ttl_is_never_delivered(server: RunningServer) -> None:
    dev = await server.register()
    created = await server.probe.send_command(dev.imei, {"command": "reset", "ttl_s": 1}, "admin")
    await asyncio.sleep(1.2)
    ws = await server.connect(dev)
    await ws.send({"type": "ping"})
    await ws.wait_for(lambda m: m["type"] == "pong")
    expired = await wait_status(server, created["id"], "expired", timeout=3)
    assert expired["status"] == "expired"
    await asyncio.sleep(0.2)
    assert not [m for m in ws.received if m["type"] == "command"]


async def test_device_cannot_finish_another_devices_command(server: RunningServer) -> None:
    a, b = await server.register(), await server.register()
    ws_a = await server.connect(a)
    created = await server.probe.send_command(a.imei, {"command": "reset"}, "admin")
    await ws_a.wait_for(lambda m: m["type"] == "command")
    ws_b = await server.connect(b)
    await ws_b.send({"type": "command_result", "id": created["id"], "ok": False})
    err = await ws_b.wait_for(lambda m: m["type"] == "error")
    assert err["code"] == "not_found"
    assert (await server.probe.sql.commands.get(created["id"]))["status"] == "sent"


async def test_queue_survives_a_restart(server_factory: ServerFactory) -> None:
    server = await server_factory()
    dev = await server.register()
    created = await server.probe.send_command(dev.imei, {"command": "reset"}, "admin")
    from tests.support import stop_server
    await stop_server(server)
    restarted = await server_factory()  # same data dir
    dev.token = await restarted.device_login(dev)
    ws = await restarted.connect(dev)
    frame = await ws.wait_for(lambda m: m["type"] == "command")
    assert frame["id"] == created["id"]
    await ws.send({"type": "command_result", "id": created["id"], "ok": True})
    assert (await wait_status(restarted, created["id"], "succeeded"))["status"] == "succeeded"


async def _commands_until_pong(ws) -> list[str]:  # noqa: ANN001
    await ws.send({"type": "ping"})
    ids = []
    while True:
        msg = await ws.recv()
        if msg is None or msg["type"] == "pong":
            return ids
        if msg["type"] == "command":
            ids.append(msg["id"])


async def test_online_device_with_empty_queue_gets_it_without_a_queue_read(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    await _commands_until_pong(ws)  # open (and its delivery) is done
    rows = server.probe.sql.commands
    reads: list[str] = []
    read_queue = rows.queued

    async def spy(imei, now):  # noqa: ANN001, ANN202
        reads.append(imei)
        return await read_queue(imei, now)

    rows.queued = spy
    try:
        created = await server.probe.send_command(dev.imei, {"command": "reset"}, "admin")
        assert created["status"] == "sent" and reads == []
        assert (await rows.get(created["id"]))["status"] == "sent"
        # an older command still queued (its delivery failed, say): the whole queue goes, oldest first
        older = await rows.create(dev.imei, "reset", {}, 60, "admin", utcnow())
        assert older is not None
        newer = await server.probe.send_command(dev.imei, {"command": "reset"}, "admin")
        assert newer["status"] == "sent" and reads == [dev.imei]
    finally:
        del rows.queued
    assert await _commands_until_pong(ws) == [created["id"], older[0]["id"], newer["id"]]


async def test_commands_racing_a_reconnect_are_delivered_once_each(server: RunningServer) -> None:
    dev = await server.register()
    ws1 = await server.connect(dev)
    await _commands_until_pong(ws1)
    send = server.probe.send_command
    results = await asyncio.gather(*(send(dev.imei, {"command": "reset"}, "admin") for _ in range(10)),
                                   server.connect(dev),
                                   *(send(dev.imei, {"command": "reset"}, "admin") for _ in range(10)))
    ws2 = results[10]
    ids = [r["id"] for r in results if isinstance(r, dict)]
    got2 = await _commands_until_pong(ws2)
    got1 = [m["id"] for m in ws1.received if m["type"] == "command"]
    while (msg := await ws1.recv()) is not None:  # the rest of what reached the first connection
        if msg["type"] == "command":
            got1.append(msg["id"])
    delivered = got1 + got2
    assert sorted(delivered) == sorted(ids)  # every command exactly once
    for cmd_id in ids:
        assert (await server.probe.sql.commands.get(cmd_id))["status"] == "sent"


async def test_connecting_without_queued_commands_reads_no_queue(server: RunningServer) -> None:
    store = server.probe.sql.commands
    reads: list[str] = []
    real = store.queued

    async def counting(imei, now):
        reads.append(imei)
        return await real(imei, now)

    store.queued = counting  # type: ignore[method-assign]
    idle, busy = await server.register(), await server.register()
    created = await server.probe.send_command(busy.imei, {"command": "reset"}, "admin")
    ws = await server.connect(idle)
    await ws.send({"type": "ping"})
    await ws.wait_for(lambda m: m["type"] == "pong")
    assert reads == []
    ws_busy = await server.connect(busy)
    assert (await ws_busy.wait_for(lambda m: m["type"] == "command"))["id"] == created["id"]
    assert reads == [busy.imei]
    assert (await wait_status(server, created["id"], "sent"))["status"] == "sent"
    # the queue is empty now: the next connect reads nothing
    ws_busy.close()
    ws_again = await server.connect(busy)
    await ws_again.send({"type": "ping"})
    await ws_again.wait_for(lambda m: m["type"] == "pong")
    assert reads == [busy.imei]
