"""SqlStore contract: the same behaviour from SQLite and MariaDB (devices, users, alarms with files,
the video index, commands, the audit log written in the change's transaction)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from tests.support import new_imei
from truckx_server.errors import Conflict
from truckx_server.models import UTC, AlarmIn, AuditEntry, OutboxEvent
from truckx_server.storage.sql import SqlStore
from truckx_server.storage.sql.schema import outbox

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def alarm(ts: dt.datetime = NOW, type_: str = "CRASH", lat: float = 52.123456789, lon: float = 13.987654321,
          files: tuple[str, ...] = (), details: dict | None = None, id_: str | None = None) -> AlarmIn:
    return AlarmIn(id=id_ or str(uuid.uuid4()), type=type_, ts=ts, lat=lat, lon=lon, speed_kmh=42.5, files=files,
                   details=details, client_id=id_ is not None)


async def device(store: SqlStore, name: str | None = None) -> str:
    imei = new_imei()
    await store.devices.create([{"imei": imei, "name": name, "secret_hash": "ab" * 32}], NOW)
    return imei


# -- devices -------------------------------------------------------------------------------------

async def test_devices_are_created_all_or_none(sql_store: SqlStore) -> None:
    a, b = new_imei(), new_imei()
    await sql_store.devices.create([{"imei": a, "name": "Truck \U0001F69A Zürich", "secret_hash": "00" * 32}], NOW)
    got = await sql_store.devices.get(a)
    assert got is not None
    assert (got["name"], bool(got["enabled"]), got["created_at"], got["last_seen"]) == \
        ("Truck \U0001F69A Zürich", True, NOW, None)
    with pytest.raises(Conflict) as info:
        await sql_store.devices.create([{"imei": b, "secret_hash": "11" * 32}, {"imei": a, "secret_hash": "11" * 32}], NOW)
    assert info.value.extra.get("imeis") == [a]
    assert await sql_store.devices.get(b) is None
    assert await sql_store.devices.get(new_imei()) is None


async def test_update_touch_and_list_devices(sql_store: SqlStore) -> None:
    imeis = sorted([await device(sql_store) for _ in range(5)])
    assert await sql_store.devices.update(imeis[0], name="renamed", enabled=False)
    assert not await sql_store.devices.update(new_imei(), name="x")
    got = await sql_store.devices.get(imeis[0])
    assert got is not None and got["name"] == "renamed" and not got["enabled"]
    seen = NOW + dt.timedelta(minutes=1, microseconds=7)
    await sql_store.devices.touch({imeis[1]: seen, imeis[2]: seen})
    assert (await sql_store.devices.get(imeis[1]) or {})["last_seen"] == seen
    page1 = await sql_store.devices.page(3)
    page2 = await sql_store.devices.page(3, after_imei=page1[-1]["imei"])
    assert [d["imei"] for d in page1 + page2] == imeis


# -- users ---------------------------------------------------------------------------------------

async def test_users(sql_store: SqlStore) -> None:
    assert await sql_store.users.count() == 0
    await sql_store.users.create("admin", "h1", "admin", NOW, 2**53 - 1)
    await sql_store.users.create("viewer", "h2", "viewer", NOW, 7)
    with pytest.raises(Conflict):
        await sql_store.users.create("admin", "h3", "admin", NOW, 8)
    assert await sql_store.users.count() == 2
    user = await sql_store.users.get("admin")
    assert user is not None and (user["password_hash"], user["role"], user["created_at"], user["token_version"]) == \
        ("h1", "admin", NOW, 2**53 - 1)
    assert await sql_store.users.get("ADMIN") is None  # user names compare exactly on every backend
    assert [u["username"] for u in await sql_store.users.list()] == ["admin", "viewer"]
    assert await sql_store.users.delete("admin") == "last_admin"
    assert await sql_store.users.delete("nobody") == "missing"
    assert await sql_store.users.delete("viewer") == "deleted"


async def test_concurrent_deletes_keep_one_admin(sql_store: SqlStore) -> None:
    for name in ("a1", "a2", "a3"):
        await sql_store.users.create(name, "h", "admin", NOW, 1)
    results = await asyncio.gather(*(sql_store.users.delete(n) for n in ("a1", "a2", "a3")))
    assert sorted(results).count("deleted") == 2
    assert len(await sql_store.users.list()) == 1


async def test_password_and_role_changes_move_the_token_version(sql_store: SqlStore) -> None:
    await sql_store.users.create("root", "h", "admin", NOW, 1)
    await sql_store.users.create("op", "h", "viewer", NOW, 1)
    assert await sql_store.users.set_password("op", "h2", 2)
    assert not await sql_store.users.set_password("nobody", "h2", 2)
    op = await sql_store.users.get("op")
    assert op is not None and (op["password_hash"], op["token_version"]) == ("h2", 2)
    assert await sql_store.users.set_role("op", "operator", 3) == ("changed", "viewer")
    assert await sql_store.users.set_role("op", "operator", 4) == ("unchanged", "operator")
    assert (await sql_store.users.get("op") or {})["token_version"] == 3  # unchanged: nothing written
    assert await sql_store.users.set_role("root", "viewer", 5) == ("last_admin", "admin")
    assert await sql_store.users.set_role("nobody", "viewer", 5) == ("missing", None)
    # two admins demote each other at once: one admin always remains
    assert await sql_store.users.set_role("op", "admin", 6) == ("changed", "operator")
    results = await asyncio.gather(sql_store.users.set_role("op", "viewer", 7),
                                   sql_store.users.set_role("root", "viewer", 8))
    assert sorted(r[0] for r in results) == ["changed", "last_admin"]
    assert [u["role"] for u in await sql_store.users.list()].count("admin") == 1


# -- the audit log -------------------------------------------------------------------------------

async def test_audit_entries_commit_with_their_change_and_only_then(sql_store: SqlStore) -> None:
    imei = new_imei()
    reg = AuditEntry("ann", "device.register", imei, {"name": "x"}, at=NOW)
    await sql_store.devices.create([{"imei": imei, "name": "x", "secret_hash": "ab" * 32}], NOW, [reg])
    # a failed change writes no entry: a conflict rolls the audit row back with it
    with pytest.raises(Conflict):
        await sql_store.devices.create([{"imei": imei, "name": "y", "secret_hash": "ab" * 32}], NOW,
                                       [AuditEntry("ann", "device.register", imei, at=NOW)])
    assert not await sql_store.devices.update(new_imei(), [AuditEntry("ann", "device.rename", "nothing")], name="z")
    assert not await sql_store.devices.rotate_secret(new_imei(), "cd" * 32, AuditEntry("ann", "device.rotate_secret", "x"))
    later = NOW + dt.timedelta(seconds=1)
    assert await sql_store.devices.update(imei, [AuditEntry("bob", "device.disable", imei, at=later)], enabled=False)
    await sql_store.users.create("admin", "h", "admin", NOW, 1)
    assert await sql_store.users.delete("admin", AuditEntry("bob", "user.delete", "admin", at=later)) == "last_admin"

    rows = await sql_store.audit.search()
    assert [(r["actor"], r["action"], r["target"], r["detail"], r["at"]) for r in rows] == [
        ("bob", "device.disable", imei, None, later), ("ann", "device.register", imei, {"name": "x"}, NOW)]
    assert [r["action"] for r in await sql_store.audit.search(actors=["ann"])] == ["device.register"]
    assert [r["action"] for r in await sql_store.audit.search(actions=["device.disable"], targets=[imei])] == \
        ["device.disable"]
    assert await sql_store.audit.search(since=later + dt.timedelta(microseconds=1)) == []
    assert [r["actor"] for r in await sql_store.audit.search(until=later)] == ["ann"]


async def test_audit_keyset_is_newest_first_and_stable(sql_store: SqlStore) -> None:
    entries = [AuditEntry("ann", "user.password", f"u{i}", at=NOW + dt.timedelta(seconds=i // 3)) for i in range(10)]
    await sql_store.audit.append(*entries)
    everything = await sql_store.audit.search(limit=100)
    assert [r["target"] for r in everything] == [f"u{i}" for i in (9, 8, 7, 6, 5, 4, 3, 2, 1, 0)]
    seen, before = [], None
    while True:
        page = await sql_store.audit.search(limit=4, before=before)
        if not page:
            break
        seen += [r["target"] for r in page]
        before = (page[-1]["at"], page[-1]["id"])
        await sql_store.audit.append(AuditEntry("ann", "user.password", "late", at=NOW + dt.timedelta(hours=1)))
    assert seen == [r["target"] for r in everything]  # entries added meanwhile do not shift the pages


# -- alarms --------------------------------------------------------------------------------------

async def test_alarm_with_files_round_trips_and_retries_are_idempotent(sql_store: SqlStore) -> None:
    imei = await device(sql_store)
    a = alarm(files=("b.mp4", "a.mp4"), details={"g": 3.5, "note": "ünïcode \U0001F4A5", "list": [1, 2]},
              id_=str(uuid.uuid4()))
    stored, created = await sql_store.alarms.insert(imei, a, NOW)
    assert created
    assert (stored["imei"], stored["type"], stored["ts"], stored["lat"], stored["lon"], stored["speed_kmh"],
            stored["details"], stored["status"], stored["received_at"]) == \
        (imei, "CRASH", NOW, 52.123456789, 13.987654321, 42.5, a.details, "active", NOW)
    assert stored["files"] == [{"name": "a.mp4", "arrived": False, "thumbnail": False},
                               {"name": "b.mp4", "arrived": False, "thumbnail": False}]
    again, created = await sql_store.alarms.insert(imei, a, NOW + dt.timedelta(seconds=5))
    assert not created and again == stored
    with pytest.raises(Conflict):  # another device reusing the id
        await sql_store.alarms.insert(await device(sql_store), a, NOW)
    await sql_store.videos.upsert(imei, "a.mp4", 10, "cd" * 32, True, NOW)
    assert (await sql_store.alarms.get(a.id) or {})["files"][0] == {"name": "a.mp4", "arrived": True,
                                                                     "thumbnail": False}
    assert await sql_store.alarms.get(str(uuid.uuid4())) is None


async def test_concurrent_alarms_are_committed_together_each_one_whole(sql_store: SqlStore) -> None:
    a_dev, b_dev = await device(sql_store), await device(sql_store)
    old = alarm(id_=str(uuid.uuid4()), files=("old.mp4",))
    await sql_store.alarms.insert(a_dev, old, NOW)
    fresh = [alarm(id_=str(uuid.uuid4()), files=(f"{i}.mp4", f"{i}b.mp4")) for i in range(5)]
    twice = alarm(id_=str(uuid.uuid4()))
    results = await asyncio.gather(
        *(sql_store.alarms.insert(a_dev, f, NOW) for f in fresh),
        sql_store.alarms.insert(a_dev, twice, NOW), sql_store.alarms.insert(a_dev, twice, NOW),  # one batch
        sql_store.alarms.insert(a_dev, old, NOW),  # a retry of a stored alarm
        sql_store.alarms.insert(b_dev, old, NOW),  # another device's id
        sql_store.alarms.insert(b_dev, fresh[0], NOW),  # an id used in the same batch by another device
        return_exceptions=True)
    assert [r[1] for r in results[:5]] == [True] * 5
    for f, (stored, _) in zip(fresh, results[:5]):
        assert stored["id"] == f.id and stored["imei"] == a_dev
        assert [x["name"] for x in stored["files"]] == sorted(f.files)
        assert await sql_store.alarms.get(f.id) == stored
    assert results[5][1] is True and results[6][1] is False and results[5][0] == results[6][0]
    assert results[7][1] is False and results[7][0]["id"] == old.id
    assert isinstance(results[8], Conflict) and isinstance(results[9], Conflict)
    ids = {r["id"] for r in await sql_store.alarms.search(imeis=[a_dev, b_dev], limit=100)}
    assert ids == {old.id, twice.id, *(f.id for f in fresh)}


def created_event(row: dict) -> OutboxEvent:
    return OutboxEvent("alarm.created", {"id": row["id"], "imei": row["imei"], "files": [f["name"] for f in row["files"]]})


async def alarm_events(sql_store: SqlStore, ids: set[str]) -> list[dict]:
    rows = await sql_store.db.all(sa.select(outbox).where(outbox.c.type == "alarm.created").order_by(outbox.c.id))
    events = [json.loads(r["data"]) for r in rows]  # stored as JSON text
    return [e for e in events if e["id"] in ids]


async def test_a_batch_of_alarms_writes_one_outbox_event_per_alarm_it_creates(sql_store: SqlStore) -> None:
    """The group commit records each new alarm's event in its transaction; a retry or a refused alarm
    records none, on the batch path and on the one-by-one path a failed batch falls back to."""
    imei, other = await device(sql_store), await device(sql_store)
    stored = alarm(id_=str(uuid.uuid4()))
    await sql_store.alarms.insert(imei, stored, NOW, created_event)
    fresh = [alarm(id_=str(uuid.uuid4()), files=(f"{i}.mp4",)) for i in range(4)]
    await asyncio.gather(*(sql_store.alarms.insert(imei, f, NOW, created_event) for f in fresh),
                         sql_store.alarms.insert(imei, fresh[0], NOW, created_event),  # the same id twice
                         sql_store.alarms.insert(imei, stored, NOW, created_event),  # a retry
                         sql_store.alarms.insert(other, stored, NOW, created_event),  # another device's id
                         return_exceptions=True)
    bad = dataclasses.replace(alarm(id_=str(uuid.uuid4())), type=None)  # sinks its batch: one by one
    late = [alarm(id_=str(uuid.uuid4())) for _ in range(2)]
    await asyncio.gather(*(sql_store.alarms.insert(imei, a, NOW, created_event) for a in [late[0], bad, late[1]]),
                         return_exceptions=True)
    ids = {stored.id, bad.id, *(a.id for a in fresh + late)}
    events = await alarm_events(sql_store, ids)
    assert sorted(e["id"] for e in events) == sorted([stored.id, *(a.id for a in fresh + late)])
    assert all(e["imei"] == imei for e in events)
    assert {e["id"]: e["files"] for e in events}[fresh[1].id] == ["1.mp4"]


async def test_an_alarm_that_cannot_be_stored_does_not_sink_the_others_of_its_batch(sql_store: SqlStore) -> None:
    imei = await device(sql_store)
    good = [alarm(id_=str(uuid.uuid4()), files=("x.mp4",)) for _ in range(3)]
    bad = dataclasses.replace(alarm(id_=str(uuid.uuid4())), type=None)  # NOT NULL: the batch's insert fails
    results = await asyncio.gather(*(sql_store.alarms.insert(imei, a, NOW) for a in [good[0], bad, *good[1:]]),
                                   return_exceptions=True)
    assert isinstance(results[1], Conflict)  # as when stored on its own: refused, nothing of it kept
    assert [r[1] for r in results if not isinstance(r, Exception)] == [True] * 3
    assert {r["id"] for r in await sql_store.alarms.search(imeis=[imei], limit=100)} == {a.id for a in good}
    for a in good:
        assert [f["name"] for f in (await sql_store.alarms.get(a.id) or {})["files"]] == ["x.mp4"]


async def test_alarm_lifecycle(sql_store: SqlStore) -> None:
    imei = await device(sql_store)
    a, _ = await sql_store.alarms.insert(imei, alarm(), NOW)
    assert await sql_store.alarms.ack(a["id"], "ops", "seen it", NOW)
    assert not await sql_store.alarms.ack(a["id"], "ops", None, NOW)
    assert await sql_store.alarms.clear(a["id"], "boss", NOW + dt.timedelta(seconds=1))
    assert not await sql_store.alarms.clear(a["id"], "boss", NOW)
    got = await sql_store.alarms.get(a["id"])
    assert got is not None
    assert (got["status"], got["acknowledged_by"], got["ack_note"], got["cleared_by"], got["cleared_at"]) == \
        ("cleared", "ops", "seen it", "boss", NOW + dt.timedelta(seconds=1))


async def test_search_alarms_filters_order_and_keyset(sql_store: SqlStore) -> None:
    d1, d2 = await device(sql_store), await device(sql_store)
    ids = {}
    specs = [("a", d1, "CRASH", 0, 10.0, 20.0, ("a.mp4",)), ("b", d1, "OVERSPEED", 1, 11.0, 21.0, ()),
             ("c", d2, "CRASH", 2, -10.0, 179.5, ("c.mp4",)), ("d", d2, "HARD_BRAKE", 2, -10.0, -179.5, ()),
             ("e", d2, "VIBRATION", 3, 45.0, 0.0, ())]
    for key, imei, type_, minute, lat, lon, files in specs:
        stored, _ = await sql_store.alarms.insert(
            imei, alarm(NOW + dt.timedelta(minutes=minute), type_, lat, lon, files), NOW)
        ids[key] = stored["id"]
    await sql_store.videos.upsert(d1, "a.mp4", 1, None, True, NOW)
    await sql_store.videos.upsert(d2, "c.mp4", 1, None, False, NOW)  # not complete yet
    await sql_store.alarms.ack(ids["b"], "ops", None, NOW)

    async def search(**kw: object) -> list[str]:
        inv = {v: k for k, v in ids.items()}
        return [inv[a["id"]] for a in await sql_store.alarms.search(**kw)]  # type: ignore[arg-type]

    c_d = sorted(["c", "d"], key=lambda k: ids[k], reverse=True)  # same ts: id descending
    assert await search() == ["e", *c_d, "b", "a"]
    assert await search(imeis=[d1]) == ["b", "a"]
    assert await search(types=["CRASH", "VIBRATION"]) == ["e", "c", "a"]
    assert await search(statuses=["acknowledged"]) == ["b"]
    assert await search(since=NOW + dt.timedelta(minutes=1), until=NOW + dt.timedelta(minutes=3)) == [*c_d, "b"]
    assert await search(bbox=(19.0, 9.0, 21.5, 11.0)) == ["b", "a"]
    assert await search(bbox=(179.0, -11.0, -179.0, -9.0)) == c_d  # across the antimeridian
    assert await search(bbox=(20.0, 10.0, 20.0, 10.0)) == ["a"]  # boundaries are inclusive, exactly
    assert await search(has_video=True) == ["a"]
    assert await search(has_video=False) == ["e", *c_d, "b"]
    first = await sql_store.alarms.search(limit=2)
    rest = await sql_store.alarms.search(limit=10, before=(first[-1]["ts"], first[-1]["id"]))
    assert [a["id"] for a in first + rest] == [ids[k] for k in ["e", *c_d, "b", "a"]]
    assert len(await sql_store.alarms.get_many([ids["a"], "nope", ids["e"]])) == 2


# -- video index ---------------------------------------------------------------------------------

async def test_video_index(sql_store: SqlStore) -> None:
    imei = await device(sql_store)
    await sql_store.videos.upsert(imei, "v1.mp4", 100, None, False, None)
    await sql_store.videos.upsert(imei, "v1.mp4", 5 * 1024**3, "ef" * 32, True, NOW)  # > 4 GiB fits
    got = await sql_store.videos.get(imei, "v1.mp4")
    assert got is not None
    assert (got["size"], got["sha256"], bool(got["complete"]), got["uploaded_at"]) == (5 * 1024**3, "ef" * 32, True, NOW)
    await asyncio.gather(*(sql_store.videos.upsert(imei, "v2.mp4", i, None, False, None) for i in range(5)))
    await sql_store.alarms.insert(imei, alarm(files=("v2.mp4",)), NOW)
    listed = await sql_store.videos.page(imei, 10)
    assert [(v["name"], v["alarm_ids"] != []) for v in listed] == [("v1.mp4", False), ("v2.mp4", True)]
    assert [v["name"] for v in await sql_store.videos.page(imei, 10, after_name="v1.mp4")] == ["v2.mp4"]
    await sql_store.videos.delete(imei, "v1.mp4")
    assert await sql_store.videos.get(imei, "v1.mp4") is None
    assert await sql_store.videos.get(new_imei(), "v2.mp4") is None


async def test_video_media_and_the_fleet_wide_page(sql_store: SqlStore) -> None:
    a, b = await device(sql_store), await device(sql_store)
    later = NOW + dt.timedelta(seconds=1)
    await sql_store.videos.upsert(a, "a.mp4", 10, "aa" * 32, True, NOW)
    await sql_store.videos.upsert(b, "b.mp4", 20, "bb" * 32, True, later)
    await sql_store.videos.upsert(b, "part.mp4", 5, None, False, None)
    assert await sql_store.videos.unprobed(10) == [(x, n, s) for x, n, s in sorted(
        [(a, "a.mp4", 10), (b, "b.mp4", 20)])]  # complete ones only, by (imei, name)
    assert await sql_store.videos.set_media(a, "a.mp4", duration_s=2.5, width=640, height=360, codec="h264",
                                            thumbnail=True, probed_at=later)
    assert not await sql_store.videos.set_media(a, "gone.mp4", duration_s=None, width=None, height=None,
                                                codec=None, thumbnail=False, probed_at=later)
    assert await sql_store.videos.unprobed(10) == [(b, "b.mp4", 20)]
    assert await sql_store.videos.unprobed(10, after=(b, "b.mp4")) == []
    got = await sql_store.videos.get(a, "a.mp4")
    assert got is not None and (got["duration_s"], got["width"], got["height"], got["codec"], bool(got["thumbnail"]),
                                got["probed_at"]) == (2.5, 640, 360, "h264", True, later)

    def keys(rows: list) -> list:
        return [(r["imei"], r["name"]) for r in rows]
    everything = dict(imeis=[a, b], since=None, until=None, complete=None)
    page = await sql_store.videos.page_all(**everything, after=None, limit=10)
    assert keys(page) == [(b, "b.mp4"), (a, "a.mp4"), (b, "part.mp4")]  # newest first, unfinished last
    assert page[1]["thumbnail"] is True and page[0]["thumbnail"] is False and page[2]["uploaded_at"] is None
    assert keys(await sql_store.videos.page_all(**everything, after=(later, b, "b.mp4"), limit=10)) == \
        [(a, "a.mp4"), (b, "part.mp4")]
    assert keys(await sql_store.videos.page_all(**everything, after=(None, b, "zzz"), limit=10)) == [(b, "part.mp4")]
    assert keys(await sql_store.videos.page_all(**{**everything, "complete": True, "since": later}, after=None,
                                                limit=10)) == [(b, "b.mp4")]
    assert keys(await sql_store.videos.page_all(**{**everything, "until": later}, after=None, limit=10)) == \
        [(a, "a.mp4")]


async def test_sessions(sql_store: SqlStore) -> None:
    principal = {"sub": "admin", "role": "admin", "version": None}
    await sql_store.sessions.create("a" * 64, "admin", principal, NOW, NOW + dt.timedelta(hours=12))
    await sql_store.sessions.create("b" * 64, "admin", principal, NOW, NOW - dt.timedelta(seconds=1))
    got = await sql_store.sessions.get("a" * 64)
    assert got is not None and got["principal"] == principal and got["expires_at"] == NOW + dt.timedelta(hours=12)
    assert await sql_store.sessions.delete_expired(NOW) == 1
    assert await sql_store.sessions.get("b" * 64) is None
    assert await sql_store.sessions.delete("a" * 64) and not await sql_store.sessions.delete("a" * 64)


# -- commands ------------------------------------------------------------------------------------

async def test_command_queue(sql_store: SqlStore) -> None:
    imei, other = await device(sql_store), await device(sql_store)

    async def create(imei: str, *args: object) -> tuple[dict, bool]:
        created = await sql_store.commands.create(imei, *args)  # type: ignore[arg-type]
        assert created is not None
        return created

    c1, before1 = await create(imei, "reset", {}, 3600, "admin", NOW)
    c2, before2 = await create(imei, "set_report_interval", {"seconds": 5}, 3600, "admin",
                               NOW + dt.timedelta(microseconds=1))
    c3, _ = await create(imei, "reset", {}, 10, None, NOW)
    _, before_other = await create(other, "reset", {}, 3600, None, NOW)
    assert (before1, before2, before_other) == (False, True, False)  # older queued commands of that device
    assert (c1["status"], c1["args"], c1["expires_at"], c2["args"]) == \
        ("queued", {}, NOW + dt.timedelta(hours=1), {"seconds": 5})
    assert c1 == await sql_store.commands.get(c1["id"])  # the row as inserted is the row as stored
    assert await sql_store.commands.create(new_imei(), "reset", {}, 10, None, NOW) is None  # not registered
    later = NOW + dt.timedelta(seconds=11)
    assert [c["id"] for c in await sql_store.commands.queued(imei, later)] == [c1["id"], c2["id"]]
    assert [c["id"] for c in await sql_store.commands.expire(later)] == [c3["id"]]
    assert await sql_store.commands.expire(later) == []
    assert (await sql_store.commands.get(c3["id"]) or {})["status"] == "expired"
    assert await sql_store.commands.mark_sent(c1["id"], later)
    assert not await sql_store.commands.mark_sent(c1["id"], later)
    assert await sql_store.commands.finish(other, c1["id"], True, None, later) == (None, False)  # not its command
    assert await sql_store.commands.finish(imei, str(uuid.uuid4()), True, None, later) == (None, False)
    done, changed = await sql_store.commands.finish(imei, c1["id"], False, "no such file", later)
    assert changed and done is not None
    assert (done["status"], done["detail"], done["finished_at"]) == ("failed", "no such file", later)
    assert done == await sql_store.commands.get(c1["id"])  # the returned row is the stored row
    again, changed = await sql_store.commands.finish(imei, c1["id"], True, None, later)  # already final
    assert not changed and again == done
    # nothing of imei is waiting any more (c1 finished, c2 sent, c3 expired); a queued command past its
    # TTL that housekeeping has not marked yet does not count either
    await sql_store.commands.mark_sent(c2["id"], later)
    await create(imei, "reset", {}, 1, None, later)
    assert (await create(imei, "reset", {}, 10, None, later + dt.timedelta(seconds=2)))[1] is False
    assert await sql_store.commands.get(str(uuid.uuid4())) is None


async def test_cancel_and_claim_race_on_the_queued_state(sql_store: SqlStore) -> None:
    imei = await device(sql_store)
    created = await sql_store.commands.create(imei, "reset", {}, 3600, "ann", NOW, str(uuid.uuid4()),
                                              AuditEntry("ann", "command.send", "c", at=NOW))
    assert created is not None
    cmd = created[0]
    # cancel and claim at once, many times over: exactly one of them wins each time
    for _ in range(5):
        fresh = await sql_store.commands.create(imei, "reset", {}, 3600, "ann", NOW)
        assert fresh is not None
        won = await asyncio.gather(sql_store.commands.cancel(fresh[0]["id"], NOW),
                                   sql_store.commands.mark_sent(fresh[0]["id"], NOW))
        assert sorted(won) == [False, True]
    assert await sql_store.commands.mark_sent(cmd["id"], NOW)
    assert not await sql_store.commands.cancel(cmd["id"], NOW, AuditEntry("ann", "command.cancel", cmd["id"]))
    # a claim that was not followed by a write goes back to the queue, and can then be cancelled
    assert await sql_store.commands.unmark_sent(cmd["id"], NOW)
    assert not await sql_store.commands.unmark_sent(cmd["id"], NOW)
    back = await sql_store.commands.get(cmd["id"])
    assert back is not None and (back["status"], back["sent_at"]) == ("queued", None)
    assert await sql_store.commands.cancel(cmd["id"], NOW, AuditEntry("bob", "command.cancel", cmd["id"], at=NOW))
    done = await sql_store.commands.get(cmd["id"])
    assert done is not None and (done["status"], done["finished_at"]) == ("cancelled", NOW)
    assert not await sql_store.commands.mark_sent(cmd["id"], NOW)
    assert [(r["actor"], r["action"]) for r in await sql_store.audit.search()] == \
        [("bob", "command.cancel"), ("ann", "command.send")]


async def test_command_search_newest_first_with_filters(sql_store: SqlStore) -> None:
    one, two = await device(sql_store), await device(sql_store)
    ids = []
    for i in range(6):
        created = await sql_store.commands.create(one if i % 2 else two, "reset", {}, 3600, None,
                                                  NOW + dt.timedelta(seconds=i // 2))
        assert created is not None
        ids.append(created[0]["id"])
    await sql_store.commands.mark_sent(ids[5], NOW)
    newest_first = [c["id"] for c in await sql_store.commands.search()]
    assert newest_first[:2] == sorted(ids[4:6], reverse=True) and set(newest_first) == set(ids)
    assert {c["id"] for c in await sql_store.commands.search(imeis=[one])} == {ids[1], ids[3], ids[5]}
    assert [c["id"] for c in await sql_store.commands.search(statuses=["sent"])] == [ids[5]]
    assert {c["id"] for c in await sql_store.commands.search(since=NOW + dt.timedelta(seconds=1),
                                                             until=NOW + dt.timedelta(seconds=2))} == set(ids[2:4])
    page = await sql_store.commands.search(limit=3)
    rest = await sql_store.commands.search(before=(page[-1]["created_at"], page[-1]["id"]))
    assert [c["id"] for c in page + rest] == newest_first


async def test_ping(sql_store: SqlStore) -> None:
    await sql_store.ping()
