"""The outbox: every event a webhook may be told of. Rows are written by the aggregate that makes the
change, in the same transaction (:func:`record`), like the audit log; deliveries are made from them
afterwards, so a crash between the change and the send loses nothing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import OutboxEvent, utcnow
from .engine import to_db
from .schema import outbox


async def record(conn: AsyncConnection, *events: OutboxEvent | None) -> None:
    """Write ``events`` on ``conn``, inside the caller's transaction, right after its change succeeded:
    the change and its events commit (or roll back) together. ``None`` entries are skipped."""
    now = to_db(utcnow())
    rows = [{"type": e.type, "at": to_db(e.at), "data": e.data, "created_at": now} for e in events if e is not None]
    if rows:
        await conn.execute(outbox.insert(), rows)
