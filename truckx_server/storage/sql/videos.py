"""The video index: one row per (imei, name) mirroring the video store (size, SHA-256, complete), with
the alarms that name each file."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .engine import SqlEngine, row_dict, to_db
from .schema import alarm_files, alarms, videos


class VideoRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def upsert(self, imei: str, name: str, size: int, sha256: str | None, complete: bool,
                     uploaded_at: dt.datetime | None) -> None:
        values = {"size": size, "sha256": sha256, "complete": complete, "uploaded_at": to_db(uploaded_at)}
        where = (videos.c.imei == imei, videos.c.name == name)

        async def q(conn: AsyncConnection) -> None:
            if not (await conn.execute(videos.update().where(*where).values(**values))).rowcount:
                await conn.execute(videos.insert().values(imei=imei, name=name, **values))
        try:
            await self.db.run(q)
        except IntegrityError:  # inserted concurrently: update instead
            await self.db.execute(videos.update().where(*where).values(**values))

    async def get(self, imei: str, name: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(videos).where(videos.c.imei == imei, videos.c.name == name))

    async def delete(self, imei: str, name: str) -> None:
        await self.db.execute(videos.delete().where(videos.c.imei == imei, videos.c.name == name))

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

        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = sa.select(videos).where(videos.c.imei == imei)
            if after_name is not None:
                stmt = stmt.where(videos.c.name > after_name)
            rows = [row_dict(r) for r in (await conn.execute(stmt.order_by(videos.c.name).limit(limit))).all()]
            if not rows:
                return rows
            links = (await conn.execute(
                sa.select(alarm_files.c.name, alarm_files.c.alarm_id)
                .where(alarm_files.c.imei == imei, alarm_files.c.name.in_([r["name"] for r in rows]))
                .order_by(alarm_files.c.name, alarm_files.c.alarm_id))).all()
            by_name: dict[str, list[str]] = {}
            for link in links:
                by_name.setdefault(link.name, []).append(link.alarm_id)
            for r in rows:
                r["complete"] = bool(r["complete"])
                r["alarm_ids"] = by_name.get(r["name"], [])
            return rows
        return await self.db.run(q, write=False)
