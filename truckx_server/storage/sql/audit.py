"""The audit log: what changed through the admin plane, by whom. Rows are written by the aggregate that
makes the change, in the same transaction (:func:`record`), and read newest first with keyset paging."""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import AuditEntry
from .engine import SqlEngine, newest_first_window, to_db
from .schema import audit


async def record(conn: AsyncConnection, *entries: AuditEntry | None) -> None:
    """Write ``entries`` on ``conn``, inside the caller's transaction: called by an aggregate right after
    its change succeeded, so the change and its audit rows commit (or roll back) together. ``None``
    entries are skipped (a change made by no admin-plane actor)."""
    rows = [{"at": to_db(e.at), "actor": e.actor, "action": e.action, "target": e.target, "detail": e.detail}
            for e in entries if e is not None]
    if rows:
        await conn.execute(audit.insert(), rows)


class AuditRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def append(self, *entries: AuditEntry) -> None:
        """Record entries on their own, for a change that is not a SQL write (a file deleted, ...)."""
        async def q(conn: AsyncConnection) -> None:
            await record(conn, *entries)
        await self.db.run(q)

    async def search(self, *, actors: Sequence[str] = (), actions: Sequence[str] = (),
                     targets: Sequence[str] = (), since: dt.datetime | None = None,
                     until: dt.datetime | None = None, before: tuple[dt.datetime, int] | None = None,
                     limit: int = 100) -> list[dict[str, Any]]:
        """Entries matching every given filter, newest first (``at DESC, id DESC``), strictly before the
        keyset ``before = (at, id)``; ``since <= at < until``."""
        cond: list[Any] = []
        if actors:
            cond.append(audit.c.actor.in_(list(actors)))
        if actions:
            cond.append(audit.c.action.in_(list(actions)))
        if targets:
            cond.append(audit.c.target.in_(list(targets)))
        cond += newest_first_window(audit.c.at, audit.c.id, since, until, before)
        return await self.db.all(sa.select(audit).where(sa.and_(sa.true(), *cond))
                                 .order_by(audit.c.at.desc(), audit.c.id.desc()).limit(limit))
