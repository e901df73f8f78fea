"""Admin-plane users: username, argon2 password hash, role."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import Conflict
from .engine import SqlEngine, to_db
from .schema import users


class UserRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def get(self, username: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(users).where(users.c.username == username))

    async def count(self) -> int:
        async def q(conn: AsyncConnection) -> int:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one())
        return await self.db.run(q, write=False)

    async def create(self, username: str, password_hash: str, role: str, now: dt.datetime) -> None:
        try:
            await self.db.execute(users.insert().values(username=username, password_hash=password_hash, role=role,
                                                        created_at=to_db(now)))
        except IntegrityError:
            raise Conflict(f"user {username!r} exists already") from None

    async def list(self) -> list[dict[str, Any]]:
        return await self.db.all(sa.select(users.c.username, users.c.role, users.c.created_at)
                                 .order_by(users.c.username))

    async def delete(self, username: str) -> str:
        """Delete a user unless it is the last admin: ``deleted``, ``missing`` or ``last_admin``.
        The admin rows are locked first (MySQL/MariaDB) so two concurrent deletes cannot both pass."""
        async def q(conn: AsyncConnection) -> str:
            admins = set((await conn.execute(
                sa.select(users.c.username).where(users.c.role == "admin").with_for_update())).scalars().all())
            row = (await conn.execute(sa.select(users.c.username, users.c.role)
                                      .where(users.c.username == username))).first()
            if row is None:
                return "missing"
            if row.role == "admin" and not (admins - {row.username}):
                return "last_admin"
            await conn.execute(users.delete().where(users.c.username == row.username))
            return "deleted"
        return await self.db.run(q)
