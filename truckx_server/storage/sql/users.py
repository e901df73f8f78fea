"""Admin-plane users: username, argon2 password hash, role, token_version (the ``ver`` of its tokens).
Every change writes its audit entry in the same transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import Conflict
from ...models import AuditEntry
from .audit import record
from .engine import SqlEngine, to_db
from .schema import users


async def _lock_admins(conn: AsyncConnection) -> set[str]:
    """The admins, their rows locked (MySQL/MariaDB) so that two concurrent changes cannot both remove
    the second-to-last admin (SQLite write transactions are serialised already)."""
    return set((await conn.execute(
        sa.select(users.c.username).where(users.c.role == "admin").with_for_update())).scalars().all())


class UserRows:
    def __init__(self, db: SqlEngine) -> None:
        self.db = db

    async def get(self, username: str) -> dict[str, Any] | None:
        return await self.db.one(sa.select(users).where(users.c.username == username))

    async def count(self) -> int:
        async def q(conn: AsyncConnection) -> int:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one())
        return await self.db.run(q, write=False)

    async def create(self, username: str, password_hash: str, role: str, now: dt.datetime, token_version: int,
                     audit: AuditEntry | None = None) -> None:
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(users.insert().values(username=username, password_hash=password_hash, role=role,
                                                     created_at=to_db(now), token_version=token_version))
            await record(conn, audit)
        try:
            await self.db.run(q)
        except IntegrityError:
            raise Conflict(f"user {username!r} exists already") from None

    async def list(self) -> list[dict[str, Any]]:
        return await self.db.all(sa.select(users.c.username, users.c.role, users.c.created_at)
                                 .order_by(users.c.username))

    async def delete(self, username: str, audit: AuditEntry | None = None) -> str:
        """Delete a user unless it is the last admin: ``deleted``, ``missing`` or ``last_admin``."""
        async def q(conn: AsyncConnection) -> str:
            admins = await _lock_admins(conn)
            row = (await conn.execute(sa.select(users.c.username, users.c.role)
                                      .where(users.c.username == username))).first()
            if row is None:
                return "missing"
            if row.role == "admin" and not (admins - {row.username}):
                return "last_admin"
            await conn.execute(users.delete().where(users.c.username == row.username))
            await record(conn, audit)
            return "deleted"
        return await self.db.run(q)

    async def set_password(self, username: str, password_hash: str, token_version: int,
                           audit: AuditEntry | None = None) -> bool:
        """Replace the password hash and the token version (revoking older tokens); False when missing."""
        async def q(conn: AsyncConnection) -> bool:
            changed = (await conn.execute(users.update().where(users.c.username == username).values(
                password_hash=password_hash, token_version=token_version))).rowcount > 0
            if changed:
                await record(conn, audit)
            return changed
        return await self.db.run(q)

    async def set_role(self, username: str, role: str, token_version: int,
                       audit: AuditEntry | None = None) -> tuple[str, str | None]:
        """Change a user's role and token version: ``(outcome, previous role)``, outcome ``changed``,
        ``unchanged`` (it has that role already: nothing written), ``missing`` or ``last_admin`` (the
        only admin cannot be demoted). The audit entry's detail gains ``from``, the role it had."""
        async def q(conn: AsyncConnection) -> tuple[str, str | None]:
            admins = await _lock_admins(conn)
            row = (await conn.execute(sa.select(users.c.username, users.c.role)
                                      .where(users.c.username == username))).first()
            if row is None:
                return "missing", None
            if row.role == role:
                return "unchanged", row.role
            if row.role == "admin" and not (admins - {row.username}):
                return "last_admin", row.role
            await conn.execute(users.update().where(users.c.username == row.username).values(
                role=role, token_version=token_version))
            if audit is not None:
                await record(conn, dataclasses.replace(audit, detail={**(audit.detail or {}), "from": row.role}))
            return "changed", row.role
        return await self.db.run(q)
