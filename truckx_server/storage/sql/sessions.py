"""Browser sessions of the fleet console: the SHA-256 of the cookie, the user, the principal its
sign-in's token carried, and when it ends. Signing out deletes the row."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from .engine import SqlEngine, to_db
from .schema import sessions


class SessionRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def create(self, session_id: str, username: str, principal: dict[str, Any], created_at: dt.datetime,
                     expires_at: dt.datetime) -> None:
        await self.db.execute(sessions.insert().values(id=session_id, username=username, principal=principal,
                                                       created_at=to_db(created_at), expires_at=to_db(expires_at)))

    async def get(self, session_id: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(sessions).where(sessions.c.id == session_id))

    async def delete(self, session_id: str) -> bool:
        return await self.db.execute(sessions.delete().where(sessions.c.id == session_id)) > 0

    async def delete_expired(self, now: dt.datetime, limit: int = 1000) -> int:
        """Remove up to ``limit`` sessions that ended before ``now``."""
        ids = [r["id"] for r in await self.db.all(
            sa.select(sessions.c.id).where(sessions.c.expires_at < to_db(now)).limit(limit))]
        if not ids:
            return 0
        return await self.db.execute(sessions.delete().where(sessions.c.id.in_(ids)))
