"""Webhook endpoints and their deliveries.

The outbox (``outbox.py``) holds every event; :meth:`WebhookRows.fan_out` turns each event not yet
fanned out into one delivery per enabled endpoint subscribed to its type, marking the event in the same
transaction (one conditional UPDATE per event, so of several processes exactly one fans it out). A
delivery is sent only while it is its endpoint's *head*, the oldest pending one, and only by the process
that claimed it (:meth:`claim_due`, a lease taken with a conditional UPDATE): per endpoint in event
order, and no double sends in normal operation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import Conflict
from ...models import AuditEntry
from .audit import record
from .engine import SqlEngine, row_dict, to_db
from .outbox import loads
from .schema import outbox, webhook_deliveries as deliveries, webhooks

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
#: the columns of a delivery as the admin API lists it
DELIVERY_COLUMNS = (deliveries.c.id, deliveries.c.message_id, deliveries.c.webhook_id, deliveries.c.type,
                    deliveries.c.status, deliveries.c.attempts, deliveries.c.last_status_code,
                    deliveries.c.last_error, deliveries.c.next_attempt_at, deliveries.c.created_at)


def new_message_id() -> str:
    """A ``webhook-id``: ``msg_`` and 32 hex digits, drawn once per delivery and kept for every attempt."""
    return "msg_" + uuid.uuid4().hex


class WebhookRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    # -- endpoints -------------------------------------------------------------------------------

    async def create(self, row: dict[str, Any], max_endpoints: int, audit: AuditEntry | None = None) -> None:
        """Insert an endpoint ``{id, url, events, description, secret, enabled, created_by, created_at}``
        with its audit entry; :class:`Conflict` when ``max_endpoints`` exist already."""
        async def q(conn: AsyncConnection) -> None:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(webhooks))).scalar_one()
            if count >= max_endpoints:
                raise Conflict(f"at most {max_endpoints} webhook endpoints; delete one first")
            await conn.execute(webhooks.insert().values(
                **{**row, "created_at": to_db(row["created_at"]), "updated_at": to_db(row["created_at"])}))
            await record(conn, audit)
        await self.db.run(q)

    async def get(self, webhook_id: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(webhooks).where(webhooks.c.id == webhook_id))

    async def page(self, limit: int, after: tuple[dt.datetime, str] | None = None) -> list[dict[str, Any]]:
        """Endpoints oldest first (``created_at, id``), strictly after the keyset ``after``."""
        stmt = sa.select(webhooks)
        if after is not None:
            at, last = to_db(after[0]), after[1]
            stmt = stmt.where(sa.or_(webhooks.c.created_at > at,
                                     sa.and_(webhooks.c.created_at == at, webhooks.c.id > last)))
        return await self.db.all(stmt.order_by(webhooks.c.created_at, webhooks.c.id).limit(limit))

    async def update(self, webhook_id: str, values: dict[str, Any], now: dt.datetime,
                     audit: AuditEntry | None = None) -> bool:
        """Set ``url``, ``events`` and/or ``enabled`` (with the audit entry); False when there is no such
        endpoint."""
        allowed = {k: v for k, v in values.items() if k in ("url", "events", "enabled", "description")}

        async def q(conn: AsyncConnection) -> bool:
            found = (await conn.execute(webhooks.update().where(webhooks.c.id == webhook_id)
                                        .values(**allowed, updated_at=to_db(now)))).rowcount > 0
            if found:
                await record(conn, audit)
            return found
        return await self.db.run(q)

    async def delete(self, webhook_id: str, audit: AuditEntry | None = None) -> bool:
        """Delete the endpoint and its deliveries (with the audit entry); False when there is none."""
        async def q(conn: AsyncConnection) -> bool:
            await conn.execute(deliveries.delete().where(deliveries.c.webhook_id == webhook_id))
            found = (await conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))).rowcount > 0
            if found:
                await record(conn, audit)
            return found
        return await self.db.run(q)

    # -- deliveries as the admin sees them -------------------------------------------------------

    async def deliveries(self, webhook_id: str, limit: int, before_id: int | None = None) -> list[dict[str, Any]]:
        """The endpoint's deliveries newest first (by id), strictly before ``before_id``."""
        stmt = sa.select(*DELIVERY_COLUMNS).where(deliveries.c.webhook_id == webhook_id)
        if before_id is not None:
            stmt = stmt.where(deliveries.c.id < before_id)
        return await self.db.all(stmt.order_by(deliveries.c.id.desc()).limit(limit))

    async def delivery(self, webhook_id: str, delivery_id: int) -> dict[str, Any] | None:
        return await self.db.one(sa.select(*DELIVERY_COLUMNS).where(
            deliveries.c.webhook_id == webhook_id, deliveries.c.id == delivery_id))

    async def retry(self, webhook_id: str, delivery_id: int, now: dt.datetime, give_up_at: dt.datetime,
                    audit: AuditEntry | None = None) -> dict[str, Any] | None:
        """Make a delivery pending again, due now, retried until ``give_up_at`` (with the audit entry);
        a delivered one is sent once more. None when there is no such delivery of this endpoint."""
        where = (deliveries.c.webhook_id == webhook_id, deliveries.c.id == delivery_id)

        async def q(conn: AsyncConnection) -> dict[str, Any] | None:
            found = (await conn.execute(deliveries.update().where(*where).values(
                status=PENDING, next_attempt_at=to_db(now), give_up_at=to_db(give_up_at), updated_at=to_db(now),
                lease_holder=None, lease_expires_at=None))).rowcount > 0
            if not found:
                return None
            await record(conn, audit)
            return row_dict((await conn.execute(sa.select(*DELIVERY_COLUMNS).where(*where))).one())
        return await self.db.run(q)

    # -- the dispatcher --------------------------------------------------------------------------

    async def fan_out(self, now: dt.datetime, give_up_at: dt.datetime, limit: int = 200) -> tuple[int, int]:
        """Fan out up to ``limit`` outbox events not fanned out yet, oldest first: one pending delivery
        per enabled endpoint subscribed to the event's type that existed when the event was recorded.
        Returns ``(events, deliveries)`` this call made. Several processes may call it at once: each
        event is marked with a conditional UPDATE in the transaction that inserts its deliveries, so
        exactly one of them fans it out. Nothing to do costs one read (no write transaction)."""
        waiting = await self.db.one(sa.select(outbox.c.id).where(outbox.c.dispatched_at.is_(None)).limit(1))
        if waiting is None:
            return 0, 0

        async def q(conn: AsyncConnection) -> tuple[int, int]:
            events = (await conn.execute(
                sa.select(outbox.c.id, outbox.c.type, outbox.c.created_at)
                .where(outbox.c.dispatched_at.is_(None)).order_by(outbox.c.id).limit(limit))).all()
            if not events:
                return 0, 0
            hooks = (await conn.execute(sa.select(webhooks.c.id, webhooks.c.events, webhooks.c.created_at)
                                        .where(webhooks.c.enabled == sa.true()))).all()
            rows: list[dict[str, Any]] = []
            taken = 0
            for event in events:
                mine = (await conn.execute(outbox.update().where(
                    outbox.c.id == event.id, outbox.c.dispatched_at.is_(None))
                    .values(dispatched_at=to_db(now)))).rowcount
                if not mine:
                    continue
                taken += 1
                for hook in hooks:
                    if event.type in (hook.events or ()) and hook.created_at <= event.created_at:
                        rows.append({"message_id": new_message_id(), "webhook_id": hook.id, "outbox_id": event.id,
                                     "type": event.type, "status": PENDING, "attempts": 0,
                                     "next_attempt_at": to_db(now), "give_up_at": to_db(give_up_at),
                                     "created_at": to_db(now), "updated_at": to_db(now)})
            if rows:
                await conn.execute(deliveries.insert(), rows)
            return taken, len(rows)
        return await self.db.run(q)

    async def claim_due(self, holder: str, now: dt.datetime, lease_s: float, limit: int) -> list[dict[str, Any]]:
        """Claim up to ``limit`` deliveries to send now, for ``lease_s`` seconds: each the head (oldest
        pending delivery) of an enabled endpoint, due, and not leased by anyone. Each comes with what
        sending it needs: ``{id, message_id, webhook_id, type, attempts, give_up_at, url, secret,
        event_type, event_at, data}``."""
        heads = (sa.select(deliveries.c.webhook_id, sa.func.min(deliveries.c.id).label("id"))
                 .where(deliveries.c.status == PENDING).group_by(deliveries.c.webhook_id).subquery())
        free = sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < to_db(now))
        due = (sa.select(deliveries.c.id)
               .select_from(deliveries.join(heads, deliveries.c.id == heads.c.id)
                            .join(webhooks, webhooks.c.id == deliveries.c.webhook_id))
               .where(deliveries.c.next_attempt_at <= to_db(now), webhooks.c.enabled == sa.true(), free)
               .order_by(deliveries.c.next_attempt_at).limit(limit))
        until = to_db(now + dt.timedelta(seconds=lease_s))

        candidates = [r["id"] for r in await self.db.all(due)]  # a read; the claims below decide
        if not candidates:
            return []

        async def q(conn: AsyncConnection) -> list[int]:
            claimed = []
            for delivery_id in candidates:
                if (await conn.execute(deliveries.update().where(
                        deliveries.c.id == delivery_id, deliveries.c.status == PENDING, free)
                        .values(lease_holder=holder, lease_expires_at=until))).rowcount:
                    claimed.append(delivery_id)
            return claimed
        ids = await self.db.run(q)
        if not ids:
            return []
        rows = await self.db.all(
            sa.select(deliveries.c.id, deliveries.c.message_id, deliveries.c.webhook_id, deliveries.c.type,
                      deliveries.c.attempts, deliveries.c.give_up_at, webhooks.c.url, webhooks.c.secret,
                      outbox.c.at.label("event_at"), outbox.c.data)
            .select_from(deliveries.join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
                         .join(outbox, outbox.c.id == deliveries.c.outbox_id))
            .where(deliveries.c.id.in_(ids)).order_by(deliveries.c.id))
        for row in rows:
            row["data"] = loads(row["data"])
        return rows

    async def attempted(self, delivery_id: int, holder: str, now: dt.datetime, *, status: str,
                        status_code: int | None, error: str | None, next_attempt_at: dt.datetime) -> bool:
        """Record one attempt of a delivery claimed by ``holder`` and release the lease: ``status`` is
        ``delivered``, ``failed`` (given up) or ``pending`` (tried again at ``next_attempt_at``). False when
        the claim was lost meanwhile (the lease expired and another process took it, or an admin retried)."""
        return await self.db.execute(deliveries.update().where(
            deliveries.c.id == delivery_id, deliveries.c.lease_holder == holder, deliveries.c.status == PENDING)
            .values(status=status, attempts=deliveries.c.attempts + 1, last_status_code=status_code,
                    last_error=error[:256] if error else None, next_attempt_at=to_db(next_attempt_at),
                    updated_at=to_db(now), lease_holder=None, lease_expires_at=None)) > 0

    async def release(self, delivery_ids: Sequence[int], holder: str) -> None:
        """Give back claims not attempted (shutdown)."""
        if delivery_ids:
            await self.db.execute(deliveries.update().where(
                deliveries.c.id.in_(list(delivery_ids)), deliveries.c.lease_holder == holder)
                .values(lease_holder=None, lease_expires_at=None))

    async def purge(self, before: dt.datetime, limit: int = 1000) -> int:
        """Delete finished deliveries last changed before ``before``, then outbox events fanned out before
        it that no delivery refers to any more; at most ``limit`` of each. Returns the events deleted."""
        async def q(conn: AsyncConnection) -> int:
            old = (await conn.execute(sa.select(deliveries.c.id).where(
                deliveries.c.status != PENDING, deliveries.c.updated_at < to_db(before)).limit(limit))).scalars().all()
            if old:
                await conn.execute(deliveries.delete().where(deliveries.c.id.in_(list(old))))
            done = (await conn.execute(sa.select(outbox.c.id).where(
                outbox.c.dispatched_at < to_db(before),
                ~sa.exists().where(deliveries.c.outbox_id == outbox.c.id)).limit(limit))).scalars().all()
            if done:
                await conn.execute(outbox.delete().where(outbox.c.id.in_(list(done))))
            return len(done)
        return await self.db.run(q)
