"""Webhook store contract on SQLite and MariaDB: outbox events commit with their change (and only then),
fan-out makes one delivery per subscribed enabled endpoint, once even when processes race; only an
endpoint's head is claimed, by one claimer; attempts, give-up, retry, purge; device presence moves once
per transition."""

from __future__ import annotations

import asyncio
import json
import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from tests.storage.test_sql_contract import NOW, alarm, device
from truckx_server.errors import Conflict
from truckx_server.models import AuditEntry, OutboxEvent
from truckx_server.storage.sql import SqlStore
from truckx_server.storage.sql.schema import outbox

LATER = NOW + dt.timedelta(days=1)


async def events(store: SqlStore) -> list[dict]:
    rows = await store.db.all(sa.select(outbox).order_by(outbox.c.id))
    return [{**r, "data": json.loads(r["data"])} for r in rows]


async def endpoint(store: SqlStore, types: list[str], enabled: bool = True, at: dt.datetime = NOW) -> str:
    hook_id = str(uuid.uuid4())
    await store.webhooks.create({"id": hook_id, "url": "https://93.184.215.14/x", "events": types,
                                 "description": None, "secret": "whsec_x", "enabled": enabled, "created_by": "admin",
                                 "created_at": at}, 100)
    return hook_id


def announce(event_type: str):
    return lambda row: OutboxEvent(event_type, {"id": row.get("id") or row.get("imei")}, NOW)


async def test_outbox_events_commit_with_their_change_and_only_then(sql_store: SqlStore) -> None:
    imei = await device(sql_store)
    a = alarm()
    _stored, created = await sql_store.alarms.insert(imei, a, NOW, announce("alarm.created"))
    assert created
    _stored, created = await sql_store.alarms.insert(imei, a, NOW, announce("alarm.created"))
    assert not created  # an idempotent retry: no second event
    assert [e["type"] for e in await events(sql_store)] == ["alarm.created"]

    def broken(_row):
        raise RuntimeError("the event could not be made")
    with pytest.raises(RuntimeError):
        await sql_store.alarms.ack(a.id, "admin", None, NOW, AuditEntry("admin", "alarm.ack", a.id), broken)
    assert (await sql_store.alarms.get(a.id))["status"] == "active"  # rolled back with the event
    assert await sql_store.alarms.ack(a.id, "admin", None, NOW, None, announce("alarm.acknowledged"))
    assert not await sql_store.alarms.ack(a.id, "admin", None, NOW, None, announce("alarm.acknowledged"))
    assert await sql_store.alarms.clear(a.id, "admin", NOW, None, announce("alarm.cleared"))
    got = await events(sql_store)
    assert [e["type"] for e in got] == ["alarm.created", "alarm.acknowledged", "alarm.cleared"]
    assert all(e["data"] == {"id": a.id} and e["dispatched_at"] is None for e in got)

    woke: list[int] = []
    sql_store.db.on_outbox.append(lambda: woke.append(1))
    created_cmd = await sql_store.commands.create(imei, "reset", {}, 60, "admin", NOW)
    assert created_cmd is not None and woke == []  # no event, no wake
    cmd = created_cmd[0]
    assert await sql_store.commands.cancel(cmd["id"], NOW, None, announce("command.finished"))
    assert woke == [1]


async def test_fan_out_makes_one_delivery_per_subscribed_enabled_endpoint_once(sql_store: SqlStore) -> None:
    alarms_hook = await endpoint(sql_store, ["alarm.created"])
    both = await endpoint(sql_store, ["alarm.created", "command.finished"])
    await endpoint(sql_store, ["alarm.created"], enabled=False)
    await endpoint(sql_store, ["alarm.created"], at=NOW + dt.timedelta(days=3650))  # made after the events
    imei = await device(sql_store)
    for _ in range(5):
        await sql_store.alarms.insert(imei, alarm(), NOW, announce("alarm.created"))
    cmd = (await sql_store.commands.create(imei, "reset", {}, 60, "admin", NOW))[0]
    await sql_store.commands.cancel(cmd["id"], NOW, None, announce("command.finished"))
    # several processes fan out at once: each event is fanned out by one of them
    results = await asyncio.gather(*(sql_store.webhooks.fan_out(NOW, LATER, limit=4) for _ in range(4)))
    while True:
        taken, _made = await sql_store.webhooks.fan_out(NOW, LATER)
        results.append((taken, _made))
        if not taken:
            break
    assert sum(t for t, _ in results) == 6 and sum(m for _, m in results) == 11
    assert [d["type"] for d in reversed(await sql_store.webhooks.deliveries(alarms_hook, 100))] == ["alarm.created"] * 5
    listed = await sql_store.webhooks.deliveries(both, 100)
    assert [d["type"] for d in reversed(listed)] == ["alarm.created"] * 5 + ["command.finished"]
    assert all(d["status"] == "pending" and d["attempts"] == 0 and d["message_id"].startswith("msg_") for d in listed)
    assert len({d["message_id"] for d in listed}) == 6
    assert all(e["dispatched_at"] is not None for e in await events(sql_store))


async def test_only_the_head_of_an_endpoint_is_claimed_by_one_claimer(sql_store: SqlStore) -> None:
    hook = await endpoint(sql_store, ["alarm.created"])
    other = await endpoint(sql_store, ["alarm.created"])
    imei = await device(sql_store)
    for _ in range(3):
        await sql_store.alarms.insert(imei, alarm(), NOW, announce("alarm.created"))
    await sql_store.webhooks.fan_out(NOW, LATER)
    order = [d["id"] for d in reversed(await sql_store.webhooks.deliveries(hook, 100))]
    claims = await asyncio.gather(*(sql_store.webhooks.claim_due(f"node{i}", NOW, 30, 10) for i in range(4)))
    claimed = [d for c in claims for d in c]
    # one head per endpoint, each claimed once, whoever claimed it
    assert sorted(d["webhook_id"] for d in claimed) == sorted([hook, other])
    head = next(d for d in claimed if d["webhook_id"] == hook)
    holder = next(f"node{i}" for i, c in enumerate(claims) if head in c)
    assert head["id"] == order[0] and head["url"] == "https://93.184.215.14/x" and head["secret"] == "whsec_x"
    assert head["data"] == {"id": (await events(sql_store))[0]["data"]["id"]} and head["type"] == "alarm.created"
    assert await sql_store.webhooks.claim_due("late", NOW, 30, 10) == []  # leased
    # a failed attempt: the head stays the head, due later; nobody else may record for it
    assert not await sql_store.webhooks.attempted(head["id"], "intruder", NOW, status="delivered",
                                                  status_code=200, error=None, next_attempt_at=NOW)
    assert await sql_store.webhooks.attempted(head["id"], holder, NOW, status="pending", status_code=500,
                                              error="HTTP 500", next_attempt_at=NOW + dt.timedelta(seconds=10))
    assert await sql_store.webhooks.claim_due("x", NOW + dt.timedelta(seconds=5), 30, 10) == []
    again = await sql_store.webhooks.claim_due("x", NOW + dt.timedelta(seconds=11), 30, 10)
    assert [d["id"] for d in again] == [order[0]] and again[0]["attempts"] == 1
    assert await sql_store.webhooks.attempted(order[0], "x", NOW, status="delivered", status_code=204, error=None,
                                              next_attempt_at=NOW)
    nxt = await sql_store.webhooks.claim_due("x", NOW + dt.timedelta(seconds=11), 30, 10)
    assert [d["id"] for d in nxt] == [order[1]]
    # an expired lease is taken over
    taken = await sql_store.webhooks.claim_due("y", NOW + dt.timedelta(seconds=60), 30, 10)
    assert [d["id"] for d in taken if d["webhook_id"] == hook] == [order[1]]
    # given up: the next one goes
    assert await sql_store.webhooks.attempted(order[1], "y", NOW, status="failed", status_code=None,
                                              error="timed out", next_attempt_at=NOW)
    assert [d["id"] for d in await sql_store.webhooks.claim_due("y", NOW + dt.timedelta(seconds=61), 30, 10)
            if d["webhook_id"] == hook] == [order[2]]
    row = await sql_store.webhooks.delivery(hook, order[1])
    assert row["status"] == "failed" and row["attempts"] == 1 and row["last_error"] == "timed out"
    # retried by hand: pending again, due now, same message id; it is the head again (the oldest pending)
    retried = await sql_store.webhooks.retry(hook, order[1], LATER, LATER + dt.timedelta(days=1))
    assert retried["status"] == "pending" and retried["message_id"] == row["message_id"]
    assert await sql_store.webhooks.retry(other, order[1], LATER, LATER) is None
    await sql_store.webhooks.release([order[2]], "y")
    assert [d["id"] for d in await sql_store.webhooks.claim_due("z", LATER, 30, 10)
            if d["webhook_id"] == hook] == [order[1]]


async def test_a_disabled_or_deleted_endpoint_is_sent_nothing(sql_store: SqlStore) -> None:
    hook = await endpoint(sql_store, ["alarm.created"])
    imei = await device(sql_store)
    await sql_store.alarms.insert(imei, alarm(), NOW, announce("alarm.created"))
    await sql_store.webhooks.fan_out(NOW, LATER)
    assert await sql_store.webhooks.update(hook, {"enabled": False}, NOW)
    assert await sql_store.webhooks.claim_due("x", NOW, 30, 10) == []
    assert await sql_store.webhooks.update(hook, {"enabled": True}, NOW)
    assert len(await sql_store.webhooks.claim_due("x", NOW, 30, 10)) == 1
    assert await sql_store.webhooks.delete(hook)
    assert not await sql_store.webhooks.delete(hook)
    assert await sql_store.webhooks.deliveries(hook, 10) == []


async def test_the_number_of_endpoints_is_bounded(sql_store: SqlStore) -> None:
    row = {"url": "https://93.184.215.14/x", "events": ["alarm.created"], "description": None, "secret": "s",
           "enabled": True, "created_by": None, "created_at": NOW}
    await sql_store.webhooks.create({**row, "id": str(uuid.uuid4())}, 2)
    await sql_store.webhooks.create({**row, "id": str(uuid.uuid4())}, 2)
    with pytest.raises(Conflict):
        await sql_store.webhooks.create({**row, "id": str(uuid.uuid4())}, 2)
    page = await sql_store.webhooks.page(1)
    assert len(page) == 1 and len(await sql_store.webhooks.page(10, (page[0]["created_at"], page[0]["id"]))) == 1


async def test_purge_deletes_finished_deliveries_and_their_events(sql_store: SqlStore) -> None:
    hook = await endpoint(sql_store, ["alarm.created"])
    imei = await device(sql_store)
    for _ in range(2):
        await sql_store.alarms.insert(imei, alarm(), NOW, announce("alarm.created"))
    await sql_store.webhooks.fan_out(NOW, LATER)
    head = (await sql_store.webhooks.claim_due("x", NOW, 30, 10))[0]
    await sql_store.webhooks.attempted(head["id"], "x", NOW, status="delivered", status_code=200, error=None,
                                       next_attempt_at=NOW)
    assert await sql_store.webhooks.purge(NOW - dt.timedelta(seconds=1)) == 0
    assert await sql_store.webhooks.purge(LATER) == 1  # the pending one's event stays
    assert [d["status"] for d in await sql_store.webhooks.deliveries(hook, 10)] == ["pending"]
    assert len(await events(sql_store)) == 1


async def test_presence_moves_once_per_transition(sql_store: SqlStore) -> None:
    imei, other = await device(sql_store, "a"), await device(sql_store)
    online = lambda row: OutboxEvent("device.online", {"imei": row["imei"], "name": row["name"]}, NOW)  # noqa: E731
    offline = lambda row: OutboxEvent("device.offline", {"imei": row["imei"]}, NOW)  # noqa: E731
    assert await sql_store.devices.presence_seen([imei], NOW, online) == [imei]
    assert await sql_store.devices.presence_seen([imei], NOW + dt.timedelta(seconds=1), online) == []
    assert await sql_store.devices.presence_stale(NOW, 10) == []
    cutoff = NOW + dt.timedelta(seconds=10)
    assert await sql_store.devices.presence_stale(cutoff, 10) == [imei]  # never-connected `other` is not
    # several processes sweep at once: one announces
    moved = await asyncio.gather(*(sql_store.devices.presence_gone([imei, other], cutoff, offline) for _ in range(4)))
    assert sorted(i for m in moved for i in m) == [imei]
    # seen again after the cutoff: not offline
    await sql_store.devices.presence_seen([imei], NOW + dt.timedelta(seconds=20), online)
    assert await sql_store.devices.presence_gone([imei], NOW + dt.timedelta(seconds=15), offline) == []
    await sql_store.devices.presence_closed(imei, NOW + dt.timedelta(seconds=30))
    assert await sql_store.devices.presence_stale(NOW + dt.timedelta(seconds=31), 10) == [imei]
    got = [(e["type"], e["data"]["imei"]) for e in await events(sql_store)]
    assert got == [("device.online", imei), ("device.offline", imei), ("device.online", imei)]
    assert (await events(sql_store))[0]["data"]["name"] == "a"
