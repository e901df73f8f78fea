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
from .engine import SqlEngine, to_db
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
