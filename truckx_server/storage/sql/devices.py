"""Devices: registration, credentials (secret hash, enabled, secret_version), names, last_seen."""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import Conflict
from ...models import AuditEntry
from .audit import record
from .engine import SqlEngine, from_db, row_dict, to_db
from .outbox import Announce, record as record_events
from .schema import devices

#: the columns device login and the WebSocket handshake need
AUTH_COLUMNS = (devices.c.imei, devices.c.secret_hash, devices.c.enabled, devices.c.secret_version)


class DeviceRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def create(self, rows: Sequence[dict[str, Any]], now: dt.datetime,
                     audit: Sequence[AuditEntry] = ()) -> None:
        """Insert devices ``{imei, name, secret_hash}`` all or none, with their audit entries;
        :class:`Conflict` names the IMEIs registered already."""
        imeis = [r["imei"] for r in rows]

        async def q(conn: AsyncConnection) -> None:
            taken = (await conn.execute(sa.select(devices.c.imei).where(devices.c.imei.in_(imeis)))).scalars().all()
            if taken:
                raise Conflict("IMEI already registered: " + ", ".join(sorted(taken)), imeis=sorted(taken))
            await conn.execute(devices.insert(), [
                {"imei": r["imei"], "name": r.get("name"), "secret_hash": r["secret_hash"], "enabled": True,
                 "created_at": to_db(now), "last_seen": None} for r in rows])
            await record(conn, *audit)
        try:
            await self.db.run(q)
        except IntegrityError:
            raise Conflict("IMEI already registered") from None

    async def get(self, imei: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(devices).where(devices.c.imei == imei))

    async def auth(self, imei: str) -> dict[str, Any] | None:
        """``{imei, secret_hash, enabled, secret_version}`` or None."""
        return await self.db.one(sa.select(*AUTH_COLUMNS).where(devices.c.imei == imei))

    async def auth_many(self, imeis: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Credentials of the given devices that are registered, by IMEI."""
        if not imeis:
            return {}
        rows = await self.db.all(sa.select(*AUTH_COLUMNS).where(devices.c.imei.in_(list(imeis))))
        return {r["imei"]: r for r in rows}

    async def all_auth(self, limit: int) -> list[dict[str, Any]]:
        """Credentials of up to ``limit`` devices (to warm a cache at start)."""
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            return [dict(r._mapping) for r in (await conn.execute(sa.select(*AUTH_COLUMNS).limit(limit))).all()]
        return await self.db.run(q, write=False)

    async def update(self, imei: str, audit: Sequence[AuditEntry] = (), **values: Any) -> bool:
        """Set ``name`` and/or ``enabled`` (and write ``audit``); False when the device is not registered."""
        allowed = {k: v for k, v in values.items() if k in ("name", "enabled")}
        if not allowed:
            return await self.get(imei) is not None

        async def q(conn: AsyncConnection) -> bool:
            found = (await conn.execute(devices.update().where(devices.c.imei == imei).values(**allowed))).rowcount > 0
            if found:
                await record(conn, *audit)
            return found
        return await self.db.run(q)

    async def rotate_secret(self, imei: str, secret_hash: str, audit: AuditEntry | None = None) -> bool:
        """Replace the secret and bump ``secret_version``, which revokes every token issued before."""
        async def q(conn: AsyncConnection) -> bool:
            found = (await conn.execute(devices.update().where(devices.c.imei == imei).values(
                secret_hash=secret_hash, secret_version=devices.c.secret_version + 1))).rowcount > 0
            if found:
                await record(conn, audit)
            return found
        return await self.db.run(q)

    async def touch(self, seen: dict[str, dt.datetime]) -> None:
        """Record ``last_seen`` for several devices at once."""
        if not seen:
            return

        async def q(conn: AsyncConnection) -> None:
            await conn.execute(
                devices.update().where(devices.c.imei == sa.bindparam("b_imei")).values(last_seen=sa.bindparam("b_seen")),
                [{"b_imei": imei, "b_seen": to_db(ts)} for imei, ts in seen.items()])
        await self.db.run(q)

    async def page(self, limit: int, after_imei: str | None = None) -> list[dict[str, Any]]:
        """Devices ordered by IMEI, strictly after ``after_imei`` (keyset)."""
        stmt = (sa.select(devices.c.imei, devices.c.name, devices.c.enabled, devices.c.created_at,
                          devices.c.last_seen).order_by(devices.c.imei).limit(limit))
        if after_imei is not None:
            stmt = stmt.where(devices.c.imei > after_imei)
        return await self.db.all(stmt)

    # -- presence, as announced to webhooks (device.online / device.offline) ------------------------

    async def presence_seen(self, imeis: Sequence[str], now: dt.datetime, announce: Announce) -> list[str]:
        """The devices ``imeis`` have a socket open (on this process) at ``now``: renew ``presence_at``,
        and move each whose announced presence is not ``online`` (never connected, or announced offline)
        to ``online`` with the event ``announce({imei, name, last_seen, presence_at})``, in one
        transaction. Conditional UPDATEs: each transition is announced once, whichever process sees it.
        Returns the IMEIs announced online."""
        if not imeis:
            return []
        imeis = list(imeis)

        async def q(conn: AsyncConnection) -> list[str]:
            await conn.execute(devices.update().where(devices.c.imei.in_(imeis)).values(presence_at=to_db(now)))
            not_online = sa.or_(devices.c.presence.is_(None), devices.c.presence != "online")
            found = (await conn.execute(sa.select(devices.c.imei, devices.c.name, devices.c.last_seen).where(
                devices.c.imei.in_(imeis), not_online).order_by(devices.c.imei))).all()
            announced = []
            for row in found:
                if (await conn.execute(devices.update().where(devices.c.imei == row.imei, not_online)
                                       .values(presence="online"))).rowcount:
                    announced.append(row.imei)
                    await record_events(conn, announce({"imei": row.imei, "name": row.name,
                                                        "last_seen": from_db(row.last_seen), "presence_at": now}))
            return announced
        return await self.db.run(q)

    async def presence_closed(self, imei: str, now: dt.datetime) -> None:
        """The device's socket closed at ``now``: it counts as gone from then (unless renewed)."""
        await self.db.execute(devices.update().where(devices.c.imei == imei).values(presence_at=to_db(now)))

    async def presence_stale(self, cutoff: dt.datetime, limit: int) -> list[str]:
        """Devices announced ``online`` whose socket was last known open before ``cutoff``."""
        rows = await self.db.all(sa.select(devices.c.imei).where(
            devices.c.presence == "online", devices.c.presence_at < to_db(cutoff))
            .order_by(devices.c.presence_at).limit(limit))
        return [r["imei"] for r in rows]

    async def presence_gone(self, imeis: Sequence[str], cutoff: dt.datetime, announce: Announce) -> list[str]:
        """Move each of ``imeis`` still announced ``online`` and not seen since ``cutoff`` to ``offline``,
        with the event ``announce({imei, name, last_seen, presence_at})``, in one transaction (each by a
        conditional UPDATE: announced once, even when several processes sweep). Returns those moved."""
        if not imeis:
            return []

        async def q(conn: AsyncConnection) -> list[str]:
            moved = []
            for imei in imeis:
                stale = (devices.c.imei == imei, devices.c.presence == "online", devices.c.presence_at < to_db(cutoff))
                if not (await conn.execute(devices.update().where(*stale).values(presence="offline"))).rowcount:
                    continue
                row = row_dict((await conn.execute(sa.select(devices.c.imei, devices.c.name, devices.c.last_seen,
                                                             devices.c.presence_at)
                                                   .where(devices.c.imei == imei))).one())
                moved.append(imei)
                await record_events(conn, announce(row))
            return moved
        return await self.db.run(q)
