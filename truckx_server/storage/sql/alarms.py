"""Alarms and their files: idempotent insert, search newest first (keyset), lifecycle transitions.
Each alarm is handed out with ``files: [{name, arrived, thumbnail}]``, ``arrived`` meaning the video of
that file is complete in the video index, ``thumbnail`` that a thumbnail of it was made."""

from __future__ import annotations

import datetime as dt
from typing import Any, Awaitable, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import Conflict
from ...models import AlarmIn, AuditEntry
from .audit import record
from .engine import GroupCommit, SqlEngine, from_db, to_db
from .outbox import Announce, record as record_events
from .schema import alarm_files, alarms, videos

T = TypeVar("T")
#: one report to insert: (imei, alarm, received at, what outbox event its creation makes)
_Insert = tuple[str, AlarmIn, dt.datetime, "Announce | None"]


class AlarmRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db
        #: concurrent reports share one transaction (group commit)
        self._inserts: GroupCommit[_Insert, tuple[dict[str, Any], bool]] = GroupCommit(self._insert_batch)

    async def insert(self, imei: str, alarm: AlarmIn, now: dt.datetime,
                     announce: Announce | None = None) -> tuple[dict[str, Any], bool]:
        """Store an alarm and its files in one transaction, with the outbox event ``announce(alarm)``
        makes of the stored alarm. Returns ``(alarm, created)``: a retry with an id this device used
        already returns the stored alarm and ``False`` (and records no event); an id another device
        used is a :class:`Conflict`. Concurrent calls are committed together (:class:`GroupCommit`):
        each alarm is still stored with all its files and its event, or not at all."""
        return await self._inserts.submit((imei, alarm, now, announce))

    async def _insert_batch(self, items: list[_Insert]) -> list[tuple[dict[str, Any], bool] | BaseException]:
        """One transaction: the ids already stored, the new alarms and their files (one multi-row
        insert each), every alarm of the batch read back with its files, and the outbox events of the
        new ones. Should an insert still collide (another process stored the same id meanwhile),
        nothing of the batch is kept and each alarm is stored on its own, as :meth:`_insert_one` always
        did."""
        ids = list(dict.fromkeys(alarm.id for _, alarm, _, _ in items))

        async def q(conn: AsyncConnection) -> tuple[set[str], dict[str, dict[str, Any]]]:
            stored = {r[0] for r in await conn.execute(sa.select(alarms.c.id).where(alarms.c.id.in_(ids)))}
            new: dict[str, _Insert] = {}
            for item in items:  # the first report of an id in the batch creates it
                if item[1].id not in stored and item[1].id not in new:
                    new[item[1].id] = item
            if new:
                await conn.execute(alarms.insert(), [_alarm_values(imei, alarm, now)
                                                     for imei, alarm, now, _ in new.values()])
                files = [{"alarm_id": alarm.id, "name": n, "imei": imei}
                         for imei, alarm, _, _ in new.values() for n in alarm.files]
                if files:
                    await conn.execute(alarm_files.insert(), files)
            rows = _alarm_rows(await conn.execute(sa.select(alarms).where(alarms.c.id.in_(ids))))
            await _attach_files(conn, rows)
            by_id = {r["id"]: r for r in rows}
            await record_events(conn, *(announce(_copy(by_id[alarm_id])) for alarm_id, (_, _, _, announce)
                                        in new.items() if announce is not None))
            return set(new), by_id

        try:
            created_ids, by_id = await self.db.run(q)
        except IntegrityError:
            return [await _settled(self._insert_one(*item)) for item in items]
        out: list[tuple[dict[str, Any], bool] | BaseException] = []
        for imei, alarm, _, _ in items:
            stored = by_id.get(alarm.id)
            if stored is None or stored["imei"] != imei:
                out.append(Conflict("alarm id is in use"))
                continue
            created = alarm.id in created_ids
            created_ids.discard(alarm.id)  # a second report of the same id in the batch is a retry
            out.append((_copy(stored), created))
        return out

    async def _insert_one(self, imei: str, alarm: AlarmIn, now: dt.datetime,
                          announce: Announce | None = None) -> tuple[dict[str, Any], bool]:
        """One alarm in its own transaction (what a batch falls back to)."""

        async def q(conn: AsyncConnection) -> None:
            await conn.execute(alarms.insert().values(**_alarm_values(imei, alarm, now)))
            if alarm.files:
                await conn.execute(alarm_files.insert(),
                                   [{"alarm_id": alarm.id, "name": n, "imei": imei} for n in alarm.files])
            if announce is not None:
                await record_events(conn, announce(await _read_alarm(conn, alarm.id)))
        try:
            await self.db.run(q)
            created = True
        except IntegrityError:
            created = False
        stored = await self.get(alarm.id)
        if stored is None or stored["imei"] != imei:
            raise Conflict("alarm id is in use")
        return stored, created

    async def get(self, alarm_id: str) -> dict[str, Any] | None:
        found = await self.get_many([alarm_id])
        return found[0] if found else None

    async def get_many(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Alarms by id, in the given order, each with its files."""
        if not ids:
            return []

        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = _alarm_rows(await conn.execute(sa.select(alarms).where(alarms.c.id.in_(ids))))
            by_id = {r["id"]: r for r in rows}
            await _attach_files(conn, rows)
            return [by_id[i] for i in ids if i in by_id]
        return await self.db.run(q, write=False)

    async def search(self, *, imeis: Sequence[str] = (), types: Sequence[str] = (),
                     statuses: Sequence[str] = (), since: dt.datetime | None = None,
                     until: dt.datetime | None = None, bbox: tuple[float, float, float, float] | None = None,
                     has_video: bool | None = None, before: tuple[dt.datetime, str] | None = None,
                     limit: int = 100) -> list[dict[str, Any]]:
        """Alarms matching every given filter, newest first (``ts DESC, id DESC``), strictly before the
        keyset ``before = (ts, id)``, each with its files. ``since <= ts < until``; ``bbox = (min_lon,
        min_lat, max_lon, max_lat)``, crossing the antimeridian when ``min_lon > max_lon``;
        ``has_video``: at least one file's video is complete."""
        cond: list[Any] = []
        if imeis:
            cond.append(alarms.c.imei.in_(list(imeis)))
        if types:
            cond.append(alarms.c.type.in_(list(types)))
        if statuses:
            cond.append(alarms.c.status.in_(list(statuses)))
        if since is not None:
            cond.append(alarms.c.ts >= to_db(since))
        if until is not None:
            cond.append(alarms.c.ts < to_db(until))
        if bbox is not None:
            min_lon, min_lat, max_lon, max_lat = bbox
            cond.append(alarms.c.lat.between(min_lat, max_lat))
            if min_lon <= max_lon:
                cond.append(alarms.c.lon.between(min_lon, max_lon))
            else:
                cond.append(sa.or_(alarms.c.lon >= min_lon, alarms.c.lon <= max_lon))
        if has_video is not None:
            arrived = sa.exists().where(
                alarm_files.c.alarm_id == alarms.c.id, videos.c.imei == alarm_files.c.imei,
                videos.c.name == alarm_files.c.name, videos.c.complete == sa.true())
            cond.append(arrived if has_video else sa.not_(arrived))
        if before is not None:
            ts, last_id = to_db(before[0]), before[1]
            cond.append(sa.or_(alarms.c.ts < ts, sa.and_(alarms.c.ts == ts, alarms.c.id < last_id)))
        stmt = (sa.select(alarms).where(sa.and_(sa.true(), *cond))
                .order_by(alarms.c.ts.desc(), alarms.c.id.desc()).limit(limit))

        # one keyset query for the page's rows and one for their files, on one connection (the
        # second sees the same snapshot on MariaDB; on SQLite both run in one read transaction)
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = _alarm_rows(await conn.execute(stmt))
            await _attach_files(conn, rows)
            return rows
        return await self.db.run(q, write=False)

    async def times(self, imei: str, since: dt.datetime, until: dt.datetime,
                    limit: int) -> list[tuple[dt.datetime, str]]:
        """``(ts, id)`` of the device's alarms with ``since <= ts <= until``, oldest first, at most ``limit``
        (one query on the ``(imei, ts, id)`` index: the alarms of a window of trips)."""
        rows = await self.db.all(sa.select(alarms.c.ts, alarms.c.id)
                                 .where(alarms.c.imei == imei, alarms.c.ts >= to_db(since),
                                        alarms.c.ts <= to_db(until))
                                 .order_by(alarms.c.ts, alarms.c.id).limit(limit))
        return [(r["ts"], r["id"]) for r in rows]

    async def ack(self, alarm_id: str, by: str, note: str | None, now: dt.datetime,
                  audit: AuditEntry | None = None, announce: Announce | None = None) -> bool:
        """``active -> acknowledged`` (and ``audit`` and the event ``announce(alarm)`` written with it);
        False when the alarm is missing or not active (concurrency-safe: the state check is part of the
        UPDATE)."""
        return await self._transition(
            alarm_id, alarms.update().where(alarms.c.id == alarm_id, alarms.c.status == "active")
            .values(status="acknowledged", acknowledged_by=by, acknowledged_at=to_db(now), ack_note=note),
            audit, announce)

    async def clear(self, alarm_id: str, by: str, now: dt.datetime, audit: AuditEntry | None = None,
                    announce: Announce | None = None) -> bool:
        """``active|acknowledged -> cleared``; False when the alarm is missing or cleared already."""
        return await self._transition(
            alarm_id, alarms.update().where(alarms.c.id == alarm_id, alarms.c.status.in_(("active", "acknowledged")))
            .values(status="cleared", cleared_by=by, cleared_at=to_db(now)), audit, announce)

    async def _transition(self, alarm_id: str, stmt: Any, audit: AuditEntry | None,
                          announce: Announce | None) -> bool:
        async def q(conn: AsyncConnection) -> bool:
            changed = (await conn.execute(stmt)).rowcount > 0
            if changed:
                await record(conn, audit)
                if announce is not None:
                    await record_events(conn, announce(await _read_alarm(conn, alarm_id)))
            return changed
        return await self.db.run(q)


def _alarm_values(imei: str, alarm: AlarmIn, now: dt.datetime) -> dict[str, Any]:
    return dict(id=alarm.id, imei=imei, type=alarm.type, ts=to_db(alarm.ts), lat=alarm.lat, lon=alarm.lon,
                speed_kmh=alarm.speed_kmh, details=alarm.details, status="active", received_at=to_db(now))


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    """A row of its own for each caller (the same alarm may be reported twice in a batch)."""
    return {**row, "files": [dict(f) for f in row["files"]]}


async def _settled(call: Awaitable[T]) -> T | BaseException:
    try:
        return await call
    except Exception as exc:
        return exc


#: the files of a page of alarms and whether each file's video has arrived (complete in the index)
_ALARM_FILES = (
    sa.select(alarm_files.c.alarm_id, alarm_files.c.name,
              sa.func.coalesce(videos.c.complete, False).label("arrived"),
              sa.func.coalesce(videos.c.thumbnail, False).label("thumbnail"))
    .select_from(alarm_files.outerjoin(videos, sa.and_(videos.c.imei == alarm_files.c.imei,
                                                       videos.c.name == alarm_files.c.name)))
    .where(alarm_files.c.alarm_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(alarm_files.c.alarm_id, alarm_files.c.name))


_ALARM_TIMES = tuple(c.name for c in alarms.c if isinstance(c.type, sa.DateTime))


def _alarm_rows(result: Any) -> list[dict[str, Any]]:
    """:func:`row_dict` for a page of alarms (the time columns are known: no per-value type test)."""
    keys = tuple(result.keys())
    times = [k for k in _ALARM_TIMES if k in keys]
    rows = []
    for values in result.all():
        row = dict(zip(keys, values))
        for k in times:
            if row[k] is not None:
                row[k] = from_db(row[k])
        rows.append(row)
    return rows


async def _read_alarm(conn: AsyncConnection, alarm_id: str) -> dict[str, Any]:
    """One alarm with its files, read on ``conn`` (inside the transaction that changed it)."""
    rows = _alarm_rows(await conn.execute(sa.select(alarms).where(alarms.c.id == alarm_id)))
    await _attach_files(conn, rows)
    return rows[0]


async def _attach_files(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Set ``files: [{name, arrived, thumbnail}]`` (by name) on each alarm row, with one query on ``conn``."""
    if not rows:
        return
    files: dict[str, list[dict[str, Any]]] = {}
    found = await conn.execute(_ALARM_FILES, {"ids": [r["id"] for r in rows]})
    for alarm_id, name, arrived, thumbnail in found.all():
        files.setdefault(alarm_id, []).append({"name": name, "arrived": bool(arrived),
                                               "thumbnail": bool(thumbnail)})
    for r in rows:
        r["files"] = files.get(r["id"], [])
