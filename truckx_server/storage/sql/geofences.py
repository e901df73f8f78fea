"""Geofences: the fences, their transitions (``geofence_events``), and the evaluation state that makes
evaluation correct across restarts and processes: per device the newest evaluated point and a version
(``geofence_devices``), per (device, fence) whether the device is inside (``geofence_inside``).

An evaluation commits with :meth:`GeofenceRows.commit_evaluation`: one transaction that moves each device's
version from the one its evaluation started from to a new one (a conditional UPDATE), and writes that
device's inside rows, transitions and outbox events only when its UPDATE won. Two evaluators of one device
(its socket moved to another process while this one still had its points queued) never both commit: the
loser re-reads the state and evaluates again, and its points are older than the newest evaluated by then.
Fence changes are audited in their transaction, like every admin change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import AuditEntry, OutboxEvent, format_time
from . import outbox
from .audit import record
from .engine import SqlEngine, from_db, newest_first_window, row_dict, to_db
from .schema import geofence_devices, geofence_events, geofence_inside, geofences

#: at most this many IMEIs per statement's IN list
CHUNK = 500


@dataclasses.dataclass(slots=True)
class DeviceState:
    """What the evaluation of one device starts from: the newest evaluated point's time (None: never
    evaluated), the version to move conditionally (None: no row yet), the fences it is inside (id ->
    since)."""

    last_ts: dt.datetime | None = None
    version: int | None = None
    inside: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class DeviceUpdate:
    """The outcome of evaluating some points of one device, to commit if its state has not moved."""

    imei: str
    expected_version: int | None
    last_ts: dt.datetime
    enters: list[tuple[str, dt.datetime]] = dataclasses.field(default_factory=list)  # (fence id, since)
    exits: list[str] = dataclasses.field(default_factory=list)  # fence ids (also fences gone or not applying)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # rows of geofence_events
    new_version: int = dataclasses.field(default_factory=lambda: secrets.randbits(62) + 1)


def _insert_ignore(conn: AsyncConnection, table: sa.Table) -> Any:
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return mysql.insert(table).prefix_with("IGNORE")


def _chunks(items: Sequence[Any], n: int = CHUNK) -> list[Sequence[Any]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


class GeofenceRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    # -- fences ----------------------------------------------------------------------------------

    async def create(self, row: dict[str, Any], audit: AuditEntry | None = None, limit: int | None = None) -> bool:
        """Insert a fence with its audit entry; False (nothing written) when ``limit`` fences exist."""
        async def q(conn: AsyncConnection) -> bool:
            if limit is not None:
                count = (await conn.execute(sa.select(sa.func.count()).select_from(geofences))).scalar_one()
                if count >= limit:
                    return False
            await conn.execute(geofences.insert(), {**row, "created_at": to_db(row["created_at"]),
                                                    "updated_at": to_db(row["updated_at"])})
            await record(conn, audit)
            return True
        return await self.db.run(q)

    async def get(self, fence_id: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(geofences).where(geofences.c.id == fence_id))

    async def all(self) -> list[dict[str, Any]]:
        """Every fence, oldest first (the evaluator's cache is built from it)."""
        return await self.db.all(sa.select(geofences).order_by(geofences.c.created_at, geofences.c.id))

    async def page(self, limit: int, after: tuple[dt.datetime, str] | None = None) -> list[dict[str, Any]]:
        """Fences oldest first (``created_at, id``), strictly after the keyset ``after``."""
        stmt = sa.select(geofences)
        if after is not None:
            at = to_db(after[0])
            stmt = stmt.where(sa.or_(geofences.c.created_at > at,
                                     sa.and_(geofences.c.created_at == at, geofences.c.id > after[1])))
        return await self.db.all(stmt.order_by(geofences.c.created_at, geofences.c.id).limit(limit))

    async def update(self, fence_id: str, values: dict[str, Any], audit: AuditEntry | None = None
                     ) -> dict[str, Any] | None:
        """Change a fence (``name``, ``geometry``, ``imeis``, ``updated_at``) with its audit entry; the
        fence as stored after, or None when there is no such fence."""
        values = {k: to_db(v) if isinstance(v, dt.datetime) else v for k, v in values.items()}

        async def q(conn: AsyncConnection) -> dict[str, Any] | None:
            if (await conn.execute(geofences.update().where(geofences.c.id == fence_id).values(**values))).rowcount == 0:
                exists = (await conn.execute(sa.select(geofences.c.id).where(geofences.c.id == fence_id))).first()
                if exists is None:  # MySQL counts changed rows only: an unchanged fence still exists
                    return None
            await record(conn, audit)
            return row_dict((await conn.execute(sa.select(geofences).where(geofences.c.id == fence_id))).one())
        return await self.db.run(q)

    async def delete(self, fence_id: str, audit: AuditEntry | None = None) -> bool:
        """Delete a fence, the inside state of every device for it, with its audit entry (its transitions
        stay). False when there is no such fence."""
        async def q(conn: AsyncConnection) -> bool:
            if (await conn.execute(geofences.delete().where(geofences.c.id == fence_id))).rowcount == 0:
                return False
            await conn.execute(geofence_inside.delete().where(geofence_inside.c.geofence_id == fence_id))
            await record(conn, audit)
            return True
        return await self.db.run(q)

    # -- transitions -----------------------------------------------------------------------------

    async def search_events(self, *, imeis: Sequence[str] = (), fence_ids: Sequence[str] = (),
                            since: dt.datetime | None = None, until: dt.datetime | None = None,
                            before: tuple[dt.datetime, str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Transitions matching every filter, newest first (``ts DESC, id DESC``), strictly before the
        keyset ``before = (ts, id)``; ``since <= ts < until``."""
        cond: list[Any] = []
        if imeis:
            cond.append(geofence_events.c.imei.in_(list(imeis)))
        if fence_ids:
            cond.append(geofence_events.c.geofence_id.in_(list(fence_ids)))
        cond += newest_first_window(geofence_events.c.ts, geofence_events.c.id, since, until, before)
        return await self.db.all(sa.select(geofence_events).where(sa.and_(sa.true(), *cond))
                                 .order_by(geofence_events.c.ts.desc(), geofence_events.c.id.desc()).limit(limit))

    # -- evaluation state ------------------------------------------------------------------------

    async def load_state(self, imeis: Sequence[str]) -> dict[str, DeviceState]:
        """The evaluation state of each of ``imeis`` (a fresh :class:`DeviceState` for one never evaluated)."""
        wanted = sorted(set(imeis))
        out = {imei: DeviceState() for imei in wanted}

        async def q(conn: AsyncConnection) -> None:
            for part in _chunks(wanted):
                for r in (await conn.execute(sa.select(geofence_devices).where(
                        geofence_devices.c.imei.in_(list(part))))).all():
                    out[r.imei].last_ts, out[r.imei].version = from_db(r.last_ts), int(r.version)
                for r in (await conn.execute(sa.select(geofence_inside).where(
                        geofence_inside.c.imei.in_(list(part))))).all():
                    out[r.imei].inside[r.geofence_id] = from_db(r.since)  # type: ignore[assignment]
        await self.db.run(q, write=False)
        return out

    async def evaluated(self) -> list[tuple[str, dt.datetime]]:
        """Every device evaluated before, with its newest evaluated point's time (catch-up at start)."""
        rows = await self.db.all(sa.select(geofence_devices.c.imei, geofence_devices.c.last_ts)
                                 .where(geofence_devices.c.last_ts.is_not(None)))
        return [(r["imei"], r["last_ts"]) for r in rows]

    async def commit_evaluation(self, updates: Sequence[DeviceUpdate]) -> set[str]:
        """Commit the updates whose device's version is still the expected one, all in one transaction;
        returns the IMEIs committed. The others changed nothing (another evaluation moved their state:
        read it again and evaluate again)."""
        if not updates:
            return set()
        ordered = sorted(updates, key=lambda u: u.imei)  # one lock order for every evaluator

        async def q(conn: AsyncConnection) -> set[str]:
            fresh = [{"imei": u.imei, "last_ts": None, "version": 0} for u in ordered if u.expected_version is None]
            if fresh:
                await conn.execute(_insert_ignore(conn, geofence_devices), fresh)
            await conn.execute(
                geofence_devices.update()
                .where(geofence_devices.c.imei == sa.bindparam("b_imei"),
                       geofence_devices.c.version == sa.bindparam("b_expected"))
                .values(last_ts=sa.bindparam("b_last_ts"), version=sa.bindparam("b_new")),
                [{"b_imei": u.imei, "b_expected": u.expected_version or 0, "b_last_ts": to_db(u.last_ts),
                  "b_new": u.new_version} for u in ordered])
            versions: dict[str, int] = {}
            for part in _chunks([u.imei for u in ordered]):
                for r in (await conn.execute(sa.select(geofence_devices.c.imei, geofence_devices.c.version)
                                             .where(geofence_devices.c.imei.in_(list(part))))).all():
                    versions[r.imei] = int(r.version)
            won = [u for u in ordered if versions.get(u.imei) == u.new_version]
            exits = [{"b_imei": u.imei, "b_fence": f} for u in won for f in u.exits]
            if exits:
                await conn.execute(geofence_inside.delete().where(
                    geofence_inside.c.imei == sa.bindparam("b_imei"),
                    geofence_inside.c.geofence_id == sa.bindparam("b_fence")), exits)
            enters = [{"imei": u.imei, "geofence_id": f, "since": to_db(since)} for u in won for f, since in u.enters]
            if enters:
                await conn.execute(geofence_inside.insert(), enters)
            events = [e for u in won for e in u.events]
            if events:
                await conn.execute(geofence_events.insert(), [
                    {**e, "ts": to_db(e["ts"]), "created_at": to_db(e["created_at"])} for e in events])
                await outbox.record(conn, *(OutboxEvent(f"geofence.{e['transition']}", event_json(e), at=e["ts"])
                                            for e in events))
            return {u.imei for u in won}
        return await self.db.run(q)


def event_json(row: dict[str, Any]) -> dict[str, Any]:
    """A transition as the admin API (and the webhooks and the events feed) show it."""
    return {"id": row["id"], "geofence_id": row["geofence_id"], "imei": row["imei"], "transition": row["transition"],
            "ts": format_time(row["ts"]), "lat": row["lat"], "lon": row["lon"]}
