"""Uploads in progress, shared by the processes of a cluster: who is receiving each one (a claim row with
a lease), and the S3 multipart uploads with their completed parts."""

from __future__ import annotations

import datetime as dt
from typing import Any, Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .engine import SqlEngine, from_db, row_dict, to_db
from .schema import s3_upload_parts, s3_uploads, upload_claims


class UploadRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    # -- claims ----------------------------------------------------------------------------------

    async def claim(self, imei: str, name: str, node_id: str, token: str, now: dt.datetime, lease_s: float,
                    live: Collection[str] | None) -> str | None:
        """Take the claim of (imei, name) for ``node_id`` with ``token`` until ``now + lease_s``: when
        nobody holds it, this node does already, its lease ran out, or its holder is not among ``live``
        (None: liveness unknown, only leases count). Returns None when taken, else the holder's node."""
        until = to_db(now + dt.timedelta(seconds=lease_s))
        where = (upload_claims.c.imei == imei, upload_claims.c.name == name)

        async def q(conn: AsyncConnection) -> str | None:
            row = (await conn.execute(sa.select(upload_claims).where(*where).with_for_update())).first()
            if row is None:
                await conn.execute(upload_claims.insert().values(imei=imei, name=name, node_id=node_id, token=token,
                                                                 expires_at=until))
                return None
            holder = row.node_id
            if holder == node_id or from_db(row.expires_at) <= now or (live is not None and holder not in live):
                await conn.execute(upload_claims.update().where(*where).values(node_id=node_id, token=token,
                                                                               expires_at=until))
                return None
            return str(holder)
        try:
            return await self.db.run(q)
        except IntegrityError:  # inserted concurrently: held by someone else now
            holder = await self.holder(imei, name, now, None)
            return holder or "?"

    async def holder(self, imei: str, name: str, now: dt.datetime, live: Collection[str] | None) -> str | None:
        """The node holding a valid claim of (imei, name), or None."""
        row = await self.db.one(sa.select(upload_claims).where(upload_claims.c.imei == imei, upload_claims.c.name == name))
        if row is None or row["expires_at"] <= now or (live is not None and row["node_id"] not in live):
            return None
        return str(row["node_id"])

    async def release(self, imei: str, name: str, token: str) -> None:
        await self.db.execute(upload_claims.delete().where(upload_claims.c.imei == imei, upload_claims.c.name == name,
                                                           upload_claims.c.token == token))

    async def renew(self, node_id: str, tokens: Sequence[str], until: dt.datetime) -> None:
        if tokens:
            await self.db.execute(upload_claims.update().where(
                upload_claims.c.node_id == node_id, upload_claims.c.token.in_(list(tokens))).values(expires_at=to_db(until)))

    # -- S3 multipart uploads --------------------------------------------------------------------

    async def s3_get(self, imei: str, name: str) -> dict[str, Any] | None:
        """The multipart upload of (imei, name) with ``parts`` (``[{part_number, etag, size}]`` in order)."""
        async def q(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(sa.select(s3_uploads).where(s3_uploads.c.imei == imei,
                                                                  s3_uploads.c.name == name))).first()
            if row is None:
                return None
            out = row_dict(row)
            parts = (await conn.execute(sa.select(s3_upload_parts.c.part_number, s3_upload_parts.c.etag,
                                                  s3_upload_parts.c.size)
                                        .where(s3_upload_parts.c.imei == imei, s3_upload_parts.c.name == name)
                                        .order_by(s3_upload_parts.c.part_number))).all()
            out["parts"] = [dict(p._mapping) for p in parts]
            return out
        return await self.db.run(q, write=False)

    async def s3_create(self, imei: str, name: str, upload_id: str, key: str, part_size: int, now: dt.datetime) -> None:
        """Record a new multipart upload of (imei, name), replacing any older record."""
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(s3_upload_parts.delete().where(s3_upload_parts.c.imei == imei,
                                                              s3_upload_parts.c.name == name))
            await conn.execute(s3_uploads.delete().where(s3_uploads.c.imei == imei, s3_uploads.c.name == name))
            await conn.execute(s3_uploads.insert().values(
                imei=imei, name=name, upload_id=upload_id, object_key=key, part_size=part_size, state="open",
                created_at=to_db(now), updated_at=to_db(now)))
        await self.db.run(q)

    async def s3_add_part(self, imei: str, name: str, part_number: int, etag: str, size: int, now: dt.datetime) -> None:
        """A part is stored in S3: from now on it counts in the durable offset."""
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(s3_upload_parts.insert().values(imei=imei, name=name, part_number=part_number,
                                                               etag=etag, size=size))
            await conn.execute(s3_uploads.update().where(s3_uploads.c.imei == imei, s3_uploads.c.name == name)
                               .values(updated_at=to_db(now)))
        await self.db.run(q)

    async def s3_set_state(self, imei: str, name: str, state: str, now: dt.datetime) -> None:
        await self.db.execute(s3_uploads.update().where(s3_uploads.c.imei == imei, s3_uploads.c.name == name)
                              .values(state=state, updated_at=to_db(now)))

    async def s3_state(self, imei: str, name: str) -> str | None:
        row = await self.db.one(sa.select(s3_uploads.c.state).where(s3_uploads.c.imei == imei, s3_uploads.c.name == name))
        return row["state"] if row else None

    async def s3_delete(self, imei: str, name: str, upload_id: str | None = None) -> None:
        """Forget the multipart upload of (imei, name) (only ``upload_id``, when given)."""
        async def q(conn: AsyncConnection) -> None:
            where = [s3_uploads.c.imei == imei, s3_uploads.c.name == name]
            if upload_id is not None:
                where.append(s3_uploads.c.upload_id == upload_id)
                if not (await conn.execute(sa.select(s3_uploads.c.imei).where(*where))).first():
                    return
            await conn.execute(s3_upload_parts.delete().where(s3_upload_parts.c.imei == imei,
                                                              s3_upload_parts.c.name == name))
            await conn.execute(s3_uploads.delete().where(*where))
        await self.db.run(q)

    async def s3_stale(self, before: dt.datetime, now: dt.datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Multipart uploads untouched since ``before`` that nobody holds a valid claim of."""
        claimed = sa.exists().where(upload_claims.c.imei == s3_uploads.c.imei, upload_claims.c.name == s3_uploads.c.name,
                                    upload_claims.c.expires_at > to_db(now))
        return await self.db.all(sa.select(s3_uploads).where(s3_uploads.c.updated_at < to_db(before), ~claimed)
                                 .order_by(s3_uploads.c.updated_at).limit(limit))

    async def s3_upload_ids(self, upload_ids: Sequence[str]) -> set[str]:
        """Which of ``upload_ids`` are recorded."""
        if not upload_ids:
            return set()
        rows = await self.db.all(sa.select(s3_uploads.c.upload_id).where(s3_uploads.c.upload_id.in_(list(upload_ids))))
        return {r["upload_id"] for r in rows}
