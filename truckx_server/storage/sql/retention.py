"""Retention's rows: the lease that lets one process at a time run a pass, the history of passes, the
batched deletes of old cleared alarms and old videos that are not evidence, and what the relational
store holds (``GET /api/v1/admin/storage``).

A video is *evidence* while an alarm naming it (``alarm_files``, same IMEI and name) is not ``cleared``;
retention never deletes evidence, nor its index row. Every delete here is one short transaction over
a bounded batch, with its condition re-checked inside the statement, so a batch never removes a row
that stopped qualifying since it was chosen (an alarm acknowledged again, a video that became
evidence).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .engine import SqlEngine, from_db, to_db
from .schema import alarm_files, alarms, leases, retention_passes, videos

#: retention passes kept in the history
PASSES_KEPT = 100


def evidence_of(imei: Any, name: Any) -> Any:
    """The condition "an alarm that is not cleared names the video (imei, name)"."""
    return sa.exists().where(alarm_files.c.imei == imei, alarm_files.c.name == name,
                             alarms.c.id == alarm_files.c.alarm_id, alarms.c.status != "cleared")


class RetentionRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    # -- the lease ---------------------------------------------------------------------------------

    async def take_lease(self, name: str, holder: str, now: dt.datetime, ttl_s: float) -> bool:
        """Take (or renew) the lease ``name`` for ``ttl_s`` seconds: True when ``holder`` has it now.
        One conditional UPDATE decides: it matches only a lease that expired or that ``holder`` holds,
        so of several processes asking at once exactly one gets it."""
        until = to_db(now + dt.timedelta(seconds=ttl_s))
        update = (leases.update()
                  .where(leases.c.name == name,
                         sa.or_(leases.c.expires_at < to_db(now), leases.c.holder == holder))
                  .values(holder=holder, expires_at=until))
        if await self.db.execute(update) > 0:
            return True
        try:  # the first time: no row yet
            await self.db.execute(leases.insert().values(name=name, holder=holder, expires_at=until))
            return True
        except IntegrityError:
            return False  # the row exists and another holder's lease has not expired

    async def release_lease(self, name: str, holder: str, now: dt.datetime) -> None:
        await self.db.execute(leases.update().where(leases.c.name == name, leases.c.holder == holder)
                              .values(expires_at=to_db(now)))

    # -- passes ----------------------------------------------------------------------------------

    async def record_pass(self, node: str, started_at: dt.datetime, finished_at: dt.datetime, complete: bool,
                          removed: dict[str, int]) -> None:
        """Store what a pass removed, and drop the oldest passes beyond :data:`PASSES_KEPT`."""

        async def q(conn: AsyncConnection) -> None:
            await conn.execute(retention_passes.insert().values(
                node=node, started_at=to_db(started_at), finished_at=to_db(finished_at), complete=complete,
                removed_locations=removed.get("locations", 0), removed_alarms=removed.get("alarms", 0),
                removed_videos=removed.get("videos", 0), removed_video_bytes=removed.get("video_bytes", 0)))
            cutoff = (await conn.execute(sa.select(retention_passes.c.id).order_by(retention_passes.c.id.desc())
                                         .offset(PASSES_KEPT).limit(1))).scalar()
            if cutoff is not None:
                await conn.execute(retention_passes.delete().where(retention_passes.c.id <= cutoff))
        await self.db.run(q)

    async def last_pass(self) -> dict[str, Any] | None:
        return await self.db.one(sa.select(retention_passes).order_by(retention_passes.c.id.desc()).limit(1))

    # -- alarms ----------------------------------------------------------------------------------

    async def delete_cleared_alarms(self, before: dt.datetime, limit: int) -> int:
        """Delete at most ``limit`` cleared alarms whose ``ts`` is before ``before`` (oldest first), with
        their file rows; returns how many alarms went."""

        async def q(conn: AsyncConnection) -> int:
            ids = list((await conn.execute(
                sa.select(alarms.c.id).where(alarms.c.status == "cleared", alarms.c.ts < to_db(before))
                .order_by(alarms.c.status, alarms.c.ts, alarms.c.id).limit(limit))).scalars())
            if not ids:
                return 0
            await conn.execute(alarm_files.delete().where(alarm_files.c.alarm_id.in_(ids)))
            return (await conn.execute(alarms.delete().where(alarms.c.id.in_(ids),
                                                             alarms.c.status == "cleared"))).rowcount
        return await self.db.run(q)

    # -- videos ----------------------------------------------------------------------------------

    async def old_videos(self, before: dt.datetime, limit: int,
                         after: tuple[dt.datetime, str, str] | None = None) -> list[dict[str, Any]]:
        """Complete videos uploaded before ``before`` that are not evidence, oldest first, strictly after
        the keyset ``after = (uploaded_at, imei, name)``: ``[{imei, name, size, sha256, uploaded_at}]``."""
        cond: list[Any] = [videos.c.complete == sa.true(), videos.c.uploaded_at < to_db(before),
                           sa.not_(evidence_of(videos.c.imei, videos.c.name))]
        if after is not None:
            at, imei, name = to_db(after[0]), after[1], after[2]
            cond.append(sa.or_(videos.c.uploaded_at > at,
                               sa.and_(videos.c.uploaded_at == at,
                                       sa.tuple_(videos.c.imei, videos.c.name) > sa.tuple_(imei, name))))
        stmt = (sa.select(videos.c.imei, videos.c.name, videos.c.size, videos.c.sha256, videos.c.uploaded_at)
                .where(*cond)
                .order_by(videos.c.uploaded_at, videos.c.imei, videos.c.name).limit(limit))
        return await self.db.all(stmt)

    async def unindex_old_video(self, imei: str, name: str, before: dt.datetime) -> bool:
        """Delete the index row of (imei, name) if it still qualifies for retention (complete, uploaded
        before ``before``, not evidence), in one statement: True when it went and the object may be
        deleted. A video that became evidence since it was chosen stays."""
        stmt = videos.delete().where(videos.c.imei == imei, videos.c.name == name,
                                     videos.c.complete == sa.true(), videos.c.uploaded_at < to_db(before),
                                     sa.not_(evidence_of(imei, name)))
        return await self.db.execute(stmt) > 0

    async def reindex(self, video: dict[str, Any]) -> None:
        """Put back the index row of a complete video whose object could not be deleted."""
        try:
            await self.db.execute(videos.insert().values(
                imei=video["imei"], name=video["name"], size=video["size"], sha256=video.get("sha256"),
                complete=True, uploaded_at=to_db(video["uploaded_at"])))
        except IntegrityError:
            pass  # indexed again meanwhile (a new upload of the same name)

    # -- what is stored --------------------------------------------------------------------------

    async def alarm_stats(self) -> dict[str, Any]:
        """``{count, oldest}`` of every alarm."""
        row = await self.db.one(sa.select(sa.func.count().label("count"), sa.func.min(alarms.c.ts).label("oldest"))
                                .select_from(alarms))
        assert row is not None
        return {"count": int(row["count"] or 0), "oldest": from_db(row["oldest"])}

    async def video_stats(self) -> dict[str, Any]:
        """``{count, bytes, oldest}`` of the complete videos (sizes as stored: exact), the same of the
        incomplete ones (``incomplete``: bytes durably received), and how many complete videos are
        evidence (``evidence``)."""

        async def q(conn: AsyncConnection) -> dict[str, Any]:
            rows = (await conn.execute(
                sa.select(videos.c.complete, sa.func.count(), sa.func.coalesce(sa.func.sum(videos.c.size), 0),
                          sa.func.min(videos.c.uploaded_at)).group_by(videos.c.complete))).all()
            by = {bool(r[0]): (int(r[1]), int(r[2]), r[3]) for r in rows}
            evidence = (await conn.execute(
                sa.select(sa.func.count()).select_from(videos)
                .where(videos.c.complete == sa.true(), evidence_of(videos.c.imei, videos.c.name)))).scalar()
            done, part = by.get(True, (0, 0, None)), by.get(False, (0, 0, None))
            return {"count": done[0], "bytes": done[1], "oldest": from_db(done[2]), "evidence": int(evidence or 0),
                    "incomplete": {"count": part[0], "bytes": part[1]}}
        return await self.db.run(q, write=False)

    async def table_bytes(self, tables: Sequence[str]) -> int | None:
        """An estimate of the bytes ``tables`` take with their indexes: InnoDB's statistics on MariaDB,
        SQLite's ``dbstat`` (pages of each table and index). None when the database cannot tell."""
        names = list(tables)

        async def q(conn: AsyncConnection) -> int | None:
            if self.db.dialect == "sqlite":
                indexes = [r[0] for r in (await conn.execute(
                    sa.text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN :t")
                    .bindparams(sa.bindparam("t", expanding=True)), {"t": names})).all()]
                total = (await conn.execute(
                    sa.text("SELECT SUM(pgsize) FROM dbstat WHERE name IN :n")
                    .bindparams(sa.bindparam("n", expanding=True)), {"n": names + indexes})).scalar()
                return int(total or 0)
            total = (await conn.execute(
                sa.text("SELECT SUM(data_length + index_length) FROM information_schema.tables "
                        "WHERE table_schema = DATABASE() AND table_name IN :t")
                .bindparams(sa.bindparam("t", expanding=True)), {"t": names})).scalar()
            return int(total or 0)
        try:
            return await self.db.run(q, write=False)
        except Exception:  # noqa: BLE001 - dbstat not compiled in, no statistics: no estimate
            return None
