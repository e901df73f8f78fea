"""The durable command queue: ``queued -> sent -> succeeded | failed``, or ``expired`` past the TTL.
Delivery itself (which live socket gets what, in which order) is ``domain/commands.py``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .engine import SqlEngine, from_db, row_dict, to_db
from .schema import commands, devices

#: before a command is queued: is the device registered, and are older unexpired commands waiting?
_CREATE_CHECK = sa.select(
    sa.exists().where(devices.c.imei == sa.bindparam("imei")),
    sa.exists().where(commands.c.imei == sa.bindparam("imei"), commands.c.status == "queued",
                      commands.c.expires_at > sa.bindparam("now", type_=commands.c.expires_at.type)))


class CommandRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def create(self, imei: str, command: str, args: dict[str, Any], ttl_s: int,
                     created_by: str | None, now: dt.datetime) -> tuple[dict[str, Any], bool] | None:
        """Queue a command for a registered device, in one transaction: ``(command, queued_before)``,
        ``queued_before`` telling whether older unexpired commands of ``imei`` were waiting already;
        None when ``imei`` is not registered. The command is the row as inserted (not read back)."""
        row = {"id": str(uuid.uuid4()), "imei": imei, "command": command, "args": args, "status": "queued",
               "created_by": created_by, "created_at": to_db(now),
               "expires_at": to_db(now + dt.timedelta(seconds=ttl_s)), "sent_at": None, "finished_at": None,
               "detail": None}

        async def q(conn: AsyncConnection) -> tuple[dict[str, Any], bool] | None:
            registered, queued_before = (await conn.execute(_CREATE_CHECK, {"imei": imei, "now": row["created_at"]})).one()
            if not registered:
                return None
            await conn.execute(commands.insert(), row)
            out = {k: from_db(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}
            return out, bool(queued_before)
        return await self.db.run(q)

    async def get(self, command_id: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(commands).where(commands.c.id == command_id))

    async def imeis_with_queued(self) -> list[str]:
        async def q(conn: AsyncConnection) -> list[str]:
            return list((await conn.execute(sa.select(commands.c.imei).where(commands.c.status == "queued")
                                            .distinct())).scalars().all())
        return await self.db.run(q, write=False)

    async def queued(self, imei: str, now: dt.datetime) -> list[dict[str, Any]]:
        """Commands waiting for ``imei`` that have not expired, oldest first."""
        return await self.db.all(sa.select(commands).where(
            commands.c.imei == imei, commands.c.status == "queued", commands.c.expires_at > to_db(now))
            .order_by(commands.c.created_at, commands.c.id))

    async def mark_sent(self, command_id: str, now: dt.datetime) -> bool:
        return await self.db.execute(commands.update().where(commands.c.id == command_id, commands.c.status == "queued")
                                     .values(status="sent", sent_at=to_db(now))) > 0

    async def finish(self, imei: str, command_id: str, ok: bool, detail: str | None,
                     now: dt.datetime) -> tuple[dict[str, Any] | None, bool]:
        """Move a sent command of ``imei`` to succeeded/failed, in one transaction: ``(command, changed)``.
        ``command`` is None when there is no such command of this device; ``changed`` is False when it
        was not in a state a result can finish (a repeated result changes nothing)."""
        values = {"status": "succeeded" if ok else "failed", "finished_at": to_db(now), "detail": detail}

        async def q(conn: AsyncConnection) -> tuple[dict[str, Any] | None, bool]:
            found = (await conn.execute(sa.select(commands).where(commands.c.id == command_id).with_for_update())).first()
            if found is None or found.imei != imei:
                return None, False
            cmd = row_dict(found)
            if cmd["status"] not in ("sent", "queued"):
                return cmd, False
            changed = (await conn.execute(commands.update().where(
                commands.c.id == command_id, commands.c.status.in_(("sent", "queued"))).values(**values))).rowcount
            if not changed:  # not reachable while the row is locked; read what is there
                return row_dict((await conn.execute(sa.select(commands).where(commands.c.id == command_id))).one()), False
            cmd.update(status=values["status"], finished_at=from_db(values["finished_at"]), detail=detail)
            return cmd, True
        return await self.db.run(q)

    async def expire(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Mark every queued command past its TTL ``expired``; returns the ones this call expired (several
        processes expire on the same store: each command is expired, and announced, by one of them)."""
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            due = [row_dict(r) for r in (await conn.execute(sa.select(commands).where(
                commands.c.status == "queued", commands.c.expires_at <= to_db(now)))).all()]
            expired = []
            for d in due:  # one row at a time, by key: no range lock, and we learn which ones we changed
                changed = (await conn.execute(commands.update().where(
                    commands.c.id == d["id"], commands.c.status == "queued")
                    .values(status="expired", finished_at=to_db(now)))).rowcount
                if changed:
                    d.update(status="expired", finished_at=now)
                    expired.append(d)
            return expired
        return await self.db.run(q)
