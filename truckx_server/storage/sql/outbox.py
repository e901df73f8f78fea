"""The outbox: every event a webhook may be told of. Rows are written by the aggregate that makes the
change, in the same transaction (:func:`record`), like the audit log; deliveries are made from them
afterwards, so a crash between the change and the send loses nothing."""

from __future__ import annotations

import json
from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import OutboxEvent, utcnow
from .engine import OUTBOX_MARK, to_db
from .schema import outbox

#: how a domain service tells a store call which event its change makes: called with the changed row
#: (read in the change's transaction), it returns the event (or None: no event)
Announce = Callable[[dict[str, Any]], OutboxEvent | None]


def dumps(data: Any) -> str:
    """An event's ``data`` as stored (JSON text; see ``schema.outbox``)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    return json.loads(text)


async def record(conn: AsyncConnection, *events: OutboxEvent | None) -> None:
    """Write ``events`` on ``conn``, inside the caller's transaction, right after its change succeeded:
    the change and its events commit (or roll back) together. ``None`` entries are skipped."""
    now = to_db(utcnow())
    rows = [{"type": e.type, "at": to_db(e.at), "data": dumps(e.data), "created_at": now}
            for e in events if e is not None]
    if rows:
        await conn.execute(outbox.insert(), rows)
        conn.info[OUTBOX_MARK] = True  # SqlEngine.run wakes the dispatcher once this commits
