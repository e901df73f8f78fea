"""The video index: one row per (imei, name) mirroring the video store (size, SHA-256, complete), what
was read from the file once complete (duration, size, codec, thumbnail), with the alarms that name each
file."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import AuditEntry
from .audit import record
from .outbox import Announce, record as record_events
from .engine import SqlEngine, row_dict, to_db
from .schema import alarm_files, alarms, videos


class VideoRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def upsert(self, imei: str, name: str, size: int, sha256: str | None, complete: bool,
                     uploaded_at: dt.datetime | None, announce: Announce | None = None) -> None:
        """Index a video; ``announce(row)`` makes the event written with it (an upload completed)."""
        values = {"size": size, "sha256": sha256, "complete": complete, "uploaded_at": to_db(uploaded_at)}
        where = (videos.c.imei == imei, videos.c.name == name)

        async def q(conn: AsyncConnection) -> None:
            if not (await conn.execute(videos.update().where(*where).values(**values))).rowcount:
                await conn.execute(videos.insert().values(imei=imei, name=name, **values))
            if announce is not None:
                await record_events(conn, announce(row_dict((await conn.execute(sa.select(videos).where(*where))).one())))

        async def update(conn: AsyncConnection) -> None:
            await conn.execute(videos.update().where(*where).values(**values))
            if announce is not None:
                await record_events(conn, announce(row_dict((await conn.execute(sa.select(videos).where(*where))).one())))
        try:
            await self.db.run(q)
        except IntegrityError:  # inserted concurrently: update instead
            await self.db.run(update)

    async def get(self, imei: str, name: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(videos).where(videos.c.imei == imei, videos.c.name == name))

    async def delete(self, imei: str, name: str, audit: AuditEntry | None = None) -> None:
        """Drop the index row, and write ``audit`` in the same transaction."""
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(videos.delete().where(videos.c.imei == imei, videos.c.name == name))
            await record(conn, audit)
        await self.db.run(q)

    async def set_media(self, imei: str, name: str, *, duration_s: float | None, width: int | None,
                        height: int | None, codec: str | None, thumbnail: bool, probed_at: dt.datetime) -> bool:
        """Record what was read from a complete video; False when its row is gone."""
        return await self.db.execute(videos.update().where(videos.c.imei == imei, videos.c.name == name).values(
            duration_s=duration_s, width=width, height=height, codec=codec, thumbnail=thumbnail,
            probed_at=to_db(probed_at))) > 0

    async def unprobed(self, limit: int, after: tuple[str, str] | None = None) -> list[tuple[str, str, int]]:
        """``(imei, name, size)`` of complete videos not read yet, by (imei, name) after ``after``."""
        stmt = sa.select(videos.c.imei, videos.c.name, videos.c.size).where(
            videos.c.probed_at.is_(None), videos.c.complete == sa.true())
        if after is not None:
            stmt = stmt.where(sa.or_(videos.c.imei > after[0],
                                     sa.and_(videos.c.imei == after[0], videos.c.name > after[1])))
        rows = await self.db.all(stmt.order_by(videos.c.imei, videos.c.name).limit(limit))
        return [(r["imei"], r["name"], r["size"]) for r in rows]
    async def evidence(self, imei: str, name: str) -> list[str]:
        """The alarms naming (imei, name) that are not cleared: while there is one, the video is evidence."""
        rows = await self.db.all(
            sa.select(alarm_files.c.alarm_id)
            .select_from(alarm_files.join(alarms, alarms.c.id == alarm_files.c.alarm_id))
            .where(alarm_files.c.imei == imei, alarm_files.c.name == name, alarms.c.status != "cleared")
            .order_by(alarm_files.c.alarm_id))
        return [r["alarm_id"] for r in rows]

    async def page(self, imei: str, limit: int, after_name: str | None = None) -> list[dict[str, Any]]:
        """Videos of one device by name (keyset: names strictly after ``after_name``), each with
        ``alarm_ids``: the alarms of that device naming the file, sorted."""
        stmt = sa.select(videos).where(videos.c.imei == imei)
        if after_name is not None:
            stmt = stmt.where(videos.c.name > after_name)
        return await self._with_alarms(stmt.order_by(videos.c.name).limit(limit))

    async def page_all(self, *, imeis: list[str], since: dt.datetime | None, until: dt.datetime | None,
                       complete: bool | None, after: tuple[dt.datetime | None, str, str] | None,
                       limit: int) -> list[dict[str, Any]]:
        """Every device's videos, newest upload first (``uploaded_at DESC, imei DESC, name DESC``; the
        incomplete ones, without ``uploaded_at``, last: NULL sorts lowest on SQLite and MariaDB alike),
        strictly after the keyset ``after``. ``since <= uploaded_at < until``."""
        cond: list[Any] = []
        if imeis:
            cond.append(videos.c.imei.in_(imeis))
        if since is not None:
            cond.append(videos.c.uploaded_at >= to_db(since))
        if until is not None:
            cond.append(videos.c.uploaded_at < to_db(until))
        if complete is not None:
            cond.append(videos.c.complete == (sa.true() if complete else sa.false()))
        if after is not None:
            at, imei, name = after
            later_key = sa.or_(videos.c.imei < imei, sa.and_(videos.c.imei == imei, videos.c.name < name))
            if at is None:
                cond.append(sa.and_(videos.c.uploaded_at.is_(None), later_key))
            else:
                at = to_db(at)
                cond.append(sa.or_(videos.c.uploaded_at < at, sa.and_(videos.c.uploaded_at == at, later_key),
                                   videos.c.uploaded_at.is_(None)))
        stmt = (sa.select(videos).where(sa.and_(sa.true(), *cond))
                .order_by(videos.c.uploaded_at.desc(), videos.c.imei.desc(), videos.c.name.desc()).limit(limit))
        return await self._with_alarms(stmt)

    async def _with_alarms(self, stmt: Any) -> list[dict[str, Any]]:
        """The rows of ``stmt``, each with ``alarm_ids``: the alarms of its device naming the file."""

        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = [row_dict(r) for r in (await conn.execute(stmt)).all()]
            if not rows:
                return rows
            links = (await conn.execute(
                sa.select(alarm_files.c.imei, alarm_files.c.name, alarm_files.c.alarm_id)
                .where(alarm_files.c.imei.in_({r["imei"] for r in rows}),
                       alarm_files.c.name.in_({r["name"] for r in rows}))
                .order_by(alarm_files.c.alarm_id))).all()
            by_file: dict[tuple[str, str], list[str]] = {}
            for link in links:
                by_file.setdefault((link.imei, link.name), []).append(link.alarm_id)
            for r in rows:
                r["complete"] = bool(r["complete"])
                r["thumbnail"] = bool(r["thumbnail"])
                r["alarm_ids"] = by_file.get((r["imei"], r["name"]), [])
            return rows
        return await self.db.run(q, write=False)
