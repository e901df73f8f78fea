"""SqlStore contract for geofences, on SQLite and MariaDB: fences with their audit entries, the evaluation
state moved only by the evaluation that started from it (two evaluators of one device never both commit),
transitions and their outbox events in the same transaction, the newest-first event list."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import sqlalchemy as sa

from tests.support import new_imei
from truckx_server.models import UTC, AuditEntry
from truckx_server.storage.sql import SqlStore
from truckx_server.storage.sql.geofences import DeviceUpdate
from truckx_server.storage.sql.schema import outbox

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
SQUARE = {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1], [13.0, 52.0]]]}


def fence_row(name: str = "depot", imeis: list[str] | None = None, at: dt.datetime = NOW) -> dict:
    return {"id": str(uuid.uuid4()), "name": name, "geometry": SQUARE, "imeis": imeis, "created_by": "admin",
            "created_at": at, "updated_at": at}


def event(fence_id: str, imei: str, transition: str, ts: dt.datetime) -> dict:
    return {"id": str(uuid.uuid4()), "geofence_id": fence_id, "imei": imei, "transition": transition, "ts": ts,
            "lat": 52.05, "lon": 13.05, "created_at": NOW}


async def outbox_rows(store: SqlStore) -> list[dict]:
    """The outbox in order, ``data`` decoded (it is stored as JSON text)."""
    return [{**r, "data": json.loads(r["data"])} for r in await store.db.all(sa.select(outbox).order_by(outbox.c.id))]


async def test_fences_round_trip_with_their_audit_entries(sql_store: SqlStore) -> None:
    rows = sql_store.geofences
    imei = new_imei()
    a = fence_row("depot \U0001F69A", [imei])
    assert await rows.create(a, AuditEntry("admin", "geofence.create", a["id"], {"name": a["name"]}))
    got = await rows.get(a["id"])
    assert got is not None
    assert (got["name"], got["geometry"], got["imeis"], got["created_at"]) == (a["name"], SQUARE, [imei], NOW)
    b = fence_row("yard", at=NOW + dt.timedelta(seconds=1))
    assert await rows.create(b)
    assert not await rows.create(fence_row("third"), limit=2)  # the bound is checked in the transaction
    assert [f["id"] for f in await rows.all()] == [a["id"], b["id"]]
    first = await rows.page(1)
    assert [f["id"] for f in first] == [a["id"]]
    assert [f["id"] for f in await rows.page(5, after=(first[0]["created_at"], first[0]["id"]))] == [b["id"]]

    later = NOW + dt.timedelta(minutes=1)
    updated = await rows.update(a["id"], {"name": "renamed", "imeis": None, "updated_at": later},
                                AuditEntry("admin", "geofence.update", a["id"], {"name": "renamed"}))
    assert updated is not None and (updated["name"], updated["imeis"], updated["updated_at"]) == ("renamed", None, later)
    assert await rows.update(a["id"], {"name": "renamed", "updated_at": later}) is not None  # unchanged still exists
    assert await rows.update(str(uuid.uuid4()), {"name": "x", "updated_at": later}) is None
    assert await rows.delete(a["id"], AuditEntry("admin", "geofence.delete", a["id"]))
    assert not await rows.delete(a["id"])
    assert await rows.get(a["id"]) is None
    actions = [e["action"] for e in await sql_store.audit.search(targets=[a["id"]])]
    assert actions == ["geofence.delete", "geofence.update", "geofence.create"]


async def test_evaluation_commits_state_transitions_and_outbox_together(sql_store: SqlStore) -> None:
    rows = sql_store.geofences
    fence = fence_row()
    await rows.create(fence)
    imei = new_imei()
    state = (await rows.load_state([imei]))[imei]
    assert (state.last_ts, state.version, state.inside) == (None, None, {})
    t1 = NOW + dt.timedelta(seconds=1)
    enter = DeviceUpdate(imei, None, t1, enters=[(fence["id"], t1)], events=[event(fence["id"], imei, "enter", t1)])
    assert await rows.commit_evaluation([enter]) == {imei}
    state = (await rows.load_state([imei]))[imei]
    assert (state.last_ts, state.version, state.inside) == (t1, enter.new_version, {fence["id"]: t1})
    assert await rows.evaluated() == [(imei, t1)]

    t2 = NOW + dt.timedelta(seconds=2)
    leave = DeviceUpdate(imei, enter.new_version, t2, exits=[fence["id"]], events=[event(fence["id"], imei, "exit", t2)])
    assert await rows.commit_evaluation([leave]) == {imei}
    assert (await rows.load_state([imei]))[imei].inside == {}
    events = await rows.search_events(imeis=[imei])
    assert [(e["transition"], e["ts"]) for e in events] == [("exit", t2), ("enter", t1)]
    sent = [r for r in await outbox_rows(sql_store) if r["data"]["imei"] == imei]
    assert [(r["type"], r["data"]["transition"], r["data"]["ts"]) for r in sent] == [
        ("geofence.enter", "enter", "2026-11-27T12:00:01.123456Z"), ("geofence.exit", "exit", "2026-11-27T12:00:02.123456Z")]
    assert sent[0]["data"]["geofence_id"] == fence["id"] and sent[0]["at"].replace(tzinfo=UTC) == t1


async def test_an_evaluation_from_a_stale_state_commits_nothing(sql_store: SqlStore) -> None:
    rows = sql_store.geofences
    fence = fence_row()
    await rows.create(fence)
    imei, other = new_imei(), new_imei()
    t1, t2 = NOW + dt.timedelta(seconds=1), NOW + dt.timedelta(seconds=2)
    # two evaluators start from "never evaluated": only one commits, for the same device
    first = DeviceUpdate(imei, None, t1, enters=[(fence["id"], t1)], events=[event(fence["id"], imei, "enter", t1)])
    second = DeviceUpdate(imei, None, t2, enters=[(fence["id"], t2)], events=[event(fence["id"], imei, "enter", t2)])
    fine = DeviceUpdate(other, None, t1)
    assert await rows.commit_evaluation([first, fine]) == {imei, other}
    assert await rows.commit_evaluation([second]) == set()
    # concurrently, from the same version: exactly one wins
    v = first.new_version
    racers = [DeviceUpdate(imei, v, t2 + dt.timedelta(seconds=i), exits=[fence["id"]],
                           events=[event(fence["id"], imei, "exit", t2 + dt.timedelta(seconds=i))]) for i in range(4)]
    results = await asyncio.gather(*(rows.commit_evaluation([r]) for r in racers))
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    events = await rows.search_events(imeis=[imei])
    assert [e["transition"] for e in events] == ["exit", "enter"]
    assert len([r for r in await outbox_rows(sql_store) if r["data"]["imei"] == imei]) == 2


async def test_deleting_a_fence_drops_its_inside_state_but_keeps_history(sql_store: SqlStore) -> None:
    rows = sql_store.geofences
    fence = fence_row()
    await rows.create(fence)
    imei = new_imei()
    t1 = NOW + dt.timedelta(seconds=1)
    await rows.commit_evaluation([DeviceUpdate(imei, None, t1, enters=[(fence["id"], t1)],
                                               events=[event(fence["id"], imei, "enter", t1)])])
    assert await rows.delete(fence["id"])
    assert (await rows.load_state([imei]))[imei].inside == {}
    assert [e["geofence_id"] for e in await rows.search_events(fence_ids=[fence["id"]])] == [fence["id"]]


async def test_event_search_filters_and_keyset(sql_store: SqlStore) -> None:
    rows = sql_store.geofences
    a, b = fence_row("a"), fence_row("b")
    await rows.create(a)
    await rows.create(b)
    imeis = [new_imei(), new_imei()]
    for n, imei in enumerate(imeis):
        updates = []
        ts = [NOW + dt.timedelta(seconds=s) for s in range(1, 4)]
        evs = [event(a["id"], imei, "enter", ts[0]), event(b["id"], imei, "enter", ts[0]),
               event(a["id"], imei, "exit", ts[1]), event(b["id"], imei, "exit", ts[2])]
        updates.append(DeviceUpdate(imei, None, ts[2], events=evs))
        assert await rows.commit_evaluation(updates) == {imei}
    every = await rows.search_events(imeis=imeis, limit=100)
    assert len(every) == 8
    keys = [(e["ts"], e["id"]) for e in every]
    assert keys == sorted(keys, reverse=True)
    pages, before = [], None
    while True:
        page = await rows.search_events(imeis=imeis, before=before, limit=3)
        pages += page
        if len(page) < 3:
            break
        before = (page[-1]["ts"], page[-1]["id"])
    assert [e["id"] for e in pages] == [e["id"] for e in every]
    only = await rows.search_events(imeis=[imeis[0]], fence_ids=[b["id"]], since=NOW + dt.timedelta(seconds=2),
                                    until=NOW + dt.timedelta(seconds=4))
    assert [(e["transition"], e["ts"]) for e in only] == [("exit", NOW + dt.timedelta(seconds=3))]
