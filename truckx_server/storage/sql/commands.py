"""The durable command queue: ``queued -> sent -> succeeded | failed``, or ``expired`` past the TTL, or
``cancelled`` by an admin while still queued. Every move out of ``queued`` is one UPDATE conditional on
``queued``, so a cancel, an expiry and a delivery never both win. Delivery itself (which live socket gets
what, in which order) is ``domain/commands.py``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import AuditEntry
from .audit import record
from .outbox import Announce, record as record_events
from .engine import SqlEngine, from_db, newest_first_window, row_dict, to_db
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
                     created_by: str | None, now: dt.datetime, command_id: str | None = None,
                     audit: AuditEntry | None = None) -> tuple[dict[str, Any], bool] | None:
        """Queue a command for a registered device, in one transaction with its audit entry:
        ``(command, queued_before)``, ``queued_before`` telling whether older unexpired commands of
        ``imei`` were waiting already; None when ``imei`` is not registered. The command is the row as
        inserted (not read back)."""
        row = {"id": command_id or str(uuid.uuid4()), "imei": imei, "command": command, "args": args, "status": "queued",
               "created_by": created_by, "created_at": to_db(now),
               "expires_at": to_db(now + dt.timedelta(seconds=ttl_s)), "sent_at": None, "finished_at": None,
               "detail": None}

        async def q(conn: AsyncConnection) -> tuple[dict[str, Any], bool] | None:
            registered, queued_before = (await conn.execute(_CREATE_CHECK, {"imei": imei, "now": row["created_at"]})).one()
            if not registered:
                return None
            await conn.execute(commands.insert(), row)
            await record(conn, audit)
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
        """``queued -> sent``: the delivery's claim, taken before the command is written to the socket;
        False when it is no longer queued (cancelled, expired, or claimed by another delivery)."""
        return await self.db.execute(commands.update().where(commands.c.id == command_id, commands.c.status == "queued")
                                     .values(status="sent", sent_at=to_db(now))) > 0

    async def unmark_sent(self, command_id: str, sent_at: dt.datetime) -> bool:
        """``sent -> queued`` again: the claim taken at ``sent_at`` was not followed by a write (the
        connection had gone), so the command waits for the next connection."""
        return await self.db.execute(commands.update().where(
            commands.c.id == command_id, commands.c.status == "sent", commands.c.sent_at == to_db(sent_at))
            .values(status="queued", sent_at=None)) > 0

    async def cancel(self, command_id: str, now: dt.datetime, audit: AuditEntry | None = None,
                     announce: Announce | None = None) -> bool:
        """``queued -> cancelled`` with its audit entry and the event ``announce(command)``, in one
        transaction; False when the command is not (or no longer) queued. Conditional on ``queued``, like
        the delivery's claim: only one wins."""
        async def q(conn: AsyncConnection) -> bool:
            changed = (await conn.execute(commands.update().where(
                commands.c.id == command_id, commands.c.status == "queued")
                .values(status="cancelled", finished_at=to_db(now)))).rowcount > 0
            if changed:
                await record(conn, audit)
                if announce is not None:
                    row = row_dict((await conn.execute(sa.select(commands).where(commands.c.id == command_id))).one())
                    await record_events(conn, announce(row))
            return changed
        return await self.db.run(q)

    async def search(self, *, imeis: Sequence[str] = (), statuses: Sequence[str] = (),
                     since: dt.datetime | None = None, until: dt.datetime | None = None,
                     before: tuple[dt.datetime, str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Commands matching every given filter, newest first (``created_at DESC, id DESC``), strictly
        before the keyset ``before = (created_at, id)``; ``since <= created_at < until``."""
        cond: list[Any] = []
        if imeis:
            cond.append(commands.c.imei.in_(list(imeis)))
        if statuses:
            cond.append(commands.c.status.in_(list(statuses)))
        cond += newest_first_window(commands.c.created_at, commands.c.id, since, until, before)
        return await self.db.all(sa.select(commands).where(sa.and_(sa.true(), *cond))
                                 .order_by(commands.c.created_at.desc(), commands.c.id.desc()).limit(limit))

    async def finish(self, imei: str, command_id: str, ok: bool, detail: str | None,
                     now: dt.datetime, announce: Announce | None = None) -> tuple[dict[str, Any] | None, bool]:
        """Move a sent command of ``imei`` to succeeded/failed, in one transaction with the event
        ``announce(command)``: ``(command, changed)``.
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
            if announce is not None:
                await record_events(conn, announce(cmd))
            return cmd, True
        return await self.db.run(q)

    async def expire(self, now: dt.datetime, announce: Announce | None = None) -> list[dict[str, Any]]:
        """Mark every queued command past its TTL ``expired`` (each with the event ``announce(command)``);
        returns the ones this call expired (several processes expire on the same store: each command is
        expired, and announced, by one of them)."""
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
                    if announce is not None:
                        await record_events(conn, announce(d))
            return expired
        return await self.db.run(q)
