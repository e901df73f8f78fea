"""Relational store (devices, users, alarms with their files, video index, commands) on SQLAlchemy Core.

One set of queries serves SQLite (aiosqlite, the embedded default) and MySQL/MariaDB (aiomysql).
Times are stored as naive UTC and handed out as aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import Conflict, Unavailable
from ..models import UTC, AlarmIn
from .schema import alarm_files, alarms, commands, devices, users, videos

log = logging.getLogger("truckx.sql")
#: how long another process's change to a device (disable, rotate) may take to be seen here
DEVICE_AUTH_TTL_S = 30.0
DEVICE_AUTH_CACHE_MAX = 200_000
T = TypeVar("T")


def to_db(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def from_db(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: driver per backend: (async, for the server; blocking, for Alembic)
_DRIVERS = {"sqlite": ("sqlite+aiosqlite", "sqlite"), "mysql": ("mysql+aiomysql", "mysql+pymysql"),
            "mariadb": ("mysql+aiomysql", "mysql+pymysql")}


def _with_driver(url: str, blocking: bool) -> str:
    parsed = make_url(url)
    drivers = _DRIVERS.get(parsed.get_backend_name())
    if drivers is None:
        raise ValueError(f"unsupported SQL URL scheme {parsed.drivername!r}")
    query = dict(parsed.query)
    if parsed.get_backend_name() != "sqlite":
        query.setdefault("charset", "utf8mb4")
    return parsed.set(drivername=drivers[blocking], query=query).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """``sqlite:///x`` -> ``sqlite+aiosqlite:///x``; ``mysql://`` / ``mariadb://`` -> ``mysql+aiomysql://``."""
    return _with_driver(url, blocking=False)


def sync_url(url: str) -> str:
    """The same database through a blocking driver, for Alembic."""
    return _with_driver(url, blocking=True)


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, dt.datetime):
            out[key] = from_db(value)
    return out


class SqlStore:
    """All relational data. Every public coroutine is one short transaction with a timeout; transient
    connection failures are retried with backoff before surfacing as :class:`Unavailable`."""

    def __init__(self, url: str, pool_size: int = 10, timeout_s: float = 10.0, retries: int = 3) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.dialect = make_url(url).get_backend_name()
        #: imei -> (expires, row): device credentials read on every device login and handshake
        self._device_auth: dict[str, tuple[float, dict[str, Any] | None]] = {}
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": timeout_s}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, pool_pre_ping=True,
                          pool_timeout=timeout_s, connect_args={"connect_timeout": int(max(1, timeout_s))})
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        #: the same pool; on SQLite its transactions start with BEGIN IMMEDIATE (take the write lock first)
        self._writer: AsyncEngine = self.engine.execution_options(truckx_write=True)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    # -- plumbing --------------------------------------------------------------------------------

    async def close(self) -> None:
        await self.engine.dispose()

    async def _run(self, fn: Callable[[AsyncConnection], Awaitable[T]], write: bool = True) -> T:
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                async with asyncio.timeout(self.timeout_s):
                    async with (self._writer.begin() if write else self.engine.connect()) as conn:
                        return await fn(conn)
            except IntegrityError:
                raise
            except (OperationalError, DBAPIError, OSError, TimeoutError) as exc:
                if isinstance(exc, DBAPIError) and not (exc.connection_invalidated or isinstance(exc, OperationalError)):
                    raise
                if attempt == self.retries:
                    log.warning("relational store unavailable: %s", type(exc).__name__)
                    raise Unavailable("the relational store is unavailable; try again") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(sa.text("SELECT 1"))
        await self._run(q, write=False)

    async def _one(self, stmt: Any) -> dict[str, Any] | None:
        async def q(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(stmt)).first()
            return _row(row) if row is not None else None
        return await self._run(q, write=False)

    async def _all(self, stmt: Any) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            return [_row(r) for r in (await conn.execute(stmt)).all()]
        return await self._run(q, write=False)

    async def _exec(self, stmt: Any) -> int:
        async def q(conn: AsyncConnection) -> int:
            return (await conn.execute(stmt)).rowcount
        return await self._run(q)

    # -- devices ---------------------------------------------------------------------------------

    async def create_devices(self, rows: Sequence[dict[str, Any]], now: dt.datetime) -> None:
        """Insert devices ``{imei, name, secret_hash}`` all or none; :class:`Conflict` names the
        IMEIs registered already."""
        imeis = [r["imei"] for r in rows]

        async def q(conn: AsyncConnection) -> None:
            taken = (await conn.execute(sa.select(devices.c.imei).where(devices.c.imei.in_(imeis)))).scalars().all()
            if taken:
                raise Conflict("IMEI already registered: " + ", ".join(sorted(taken)), imeis=sorted(taken))
            await conn.execute(devices.insert(), [
                {"imei": r["imei"], "name": r.get("name"), "secret_hash": r["secret_hash"], "enabled": True,
                 "created_at": to_db(now), "last_seen": None} for r in rows])
        try:
            await self._run(q)
        except IntegrityError:
            raise Conflict("IMEI already registered") from None
        finally:
            self._forget_device_auth(imeis)

    async def get_device(self, imei: str) -> dict[str, Any] | None:
        return await self._one(sa.select(devices).where(devices.c.imei == imei))

    async def get_device_auth(self, imei: str) -> dict[str, Any] | None:
        """``{imei, secret_hash, enabled, secret_version}`` or None, for device login and handshakes,
        from a cache: every change made through this store invalidates its entry at once; a change
        made by another server process on the same database is seen within DEVICE_AUTH_TTL_S."""
        now = time.monotonic()
        hit = self._device_auth.get(imei)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._one(sa.select(devices.c.imei, devices.c.secret_hash, devices.c.enabled,
                                        devices.c.secret_version).where(devices.c.imei == imei))
        if len(self._device_auth) >= DEVICE_AUTH_CACHE_MAX:
            self._device_auth = {k: v for k, v in self._device_auth.items() if v[0] > now}
            if len(self._device_auth) >= DEVICE_AUTH_CACHE_MAX:
                self._device_auth.clear()
        self._device_auth[imei] = (now + DEVICE_AUTH_TTL_S, row)
        return row

    async def preload_device_auth(self) -> int:
        """Warm the credential cache at start: after a restart every device logs in again within
        seconds (a reconnect storm), and each login would otherwise be a query. Returns rows loaded."""
        async def q(conn: AsyncConnection) -> list[Any]:
            return list((await conn.execute(
                sa.select(devices.c.imei, devices.c.secret_hash, devices.c.enabled, devices.c.secret_version)
                .limit(DEVICE_AUTH_CACHE_MAX // 2))).all())
        rows = await self._run(q, write=False)
        expires = time.monotonic() + DEVICE_AUTH_TTL_S
        for row in rows:
            self._device_auth[row.imei] = (expires, dict(row._mapping))
        return len(rows)

    def _forget_device_auth(self, imeis: Iterable[str]) -> None:
        for imei in imeis:
            self._device_auth.pop(imei, None)

    async def update_device(self, imei: str, **values: Any) -> bool:
        allowed = {k: v for k, v in values.items() if k in ("name", "enabled", "secret_hash")}
        if not allowed:
            return await self.get_device(imei) is not None
        try:
            return await self._exec(devices.update().where(devices.c.imei == imei).values(**allowed)) > 0
        finally:
            self._forget_device_auth((imei,))

    async def rotate_device_secret(self, imei: str, secret_hash: str) -> bool:
        """Replace the secret and bump ``secret_version``, which revokes every token issued before."""
        try:
            return await self._exec(devices.update().where(devices.c.imei == imei).values(
                secret_hash=secret_hash, secret_version=devices.c.secret_version + 1)) > 0
        finally:
            self._forget_device_auth((imei,))

    async def touch_devices(self, seen: dict[str, dt.datetime]) -> None:
        """Record ``last_seen`` for several devices at once."""
        if not seen:
            return

        async def q(conn: AsyncConnection) -> None:
            await conn.execute(
                devices.update().where(devices.c.imei == sa.bindparam("b_imei")).values(last_seen=sa.bindparam("b_seen")),
                [{"b_imei": imei, "b_seen": to_db(ts)} for imei, ts in seen.items()])
        await self._run(q)

    # -- users -----------------------------------------------------------------------------------

    async def get_user(self, username: str) -> dict[str, Any] | None:
        return await self._one(sa.select(users).where(users.c.username == username))

    async def count_users(self) -> int:
        async def q(conn: AsyncConnection) -> int:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one())
        return await self._run(q, write=False)

    async def create_user(self, username: str, password_hash: str, role: str, now: dt.datetime) -> None:
        try:
            await self._exec(users.insert().values(username=username, password_hash=password_hash, role=role,
                                                   created_at=to_db(now)))
        except IntegrityError:
            raise Conflict(f"user {username!r} exists already") from None

    # -- alarms ----------------------------------------------------------------------------------

    async def insert_alarm(self, imei: str, alarm: AlarmIn, now: dt.datetime) -> tuple[dict[str, Any], bool]:
        """Store an alarm and its files in one transaction. Returns ``(alarm, created)``: a retry with
        an id this device used already returns the stored alarm and ``False``."""

        async def q(conn: AsyncConnection) -> None:
            await conn.execute(alarms.insert().values(
                id=alarm.id, imei=imei, type=alarm.type, ts=to_db(alarm.ts), lat=alarm.lat, lon=alarm.lon,
                speed_kmh=alarm.speed_kmh, details=alarm.details, status="active", received_at=to_db(now)))
            if alarm.files:
                await conn.execute(alarm_files.insert(),
                                   [{"alarm_id": alarm.id, "name": n, "imei": imei} for n in alarm.files])
        try:
            await self._run(q)
            created = True
        except IntegrityError:
            created = False
        stored = await self.get_alarm(alarm.id)
        if stored is None or stored["imei"] != imei:
            raise Conflict("alarm id is in use")
        return stored, created

    async def get_alarm(self, alarm_id: str) -> dict[str, Any] | None:
        found = await self.get_alarms([alarm_id])
        return found[0] if found else None

    async def get_alarms(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Alarms by id, in the given order, each with ``files: [{name, arrived}]``."""
        if not ids:
            return []

        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = _alarm_rows(await conn.execute(sa.select(alarms).where(alarms.c.id.in_(ids))))
            by_id = {r["id"]: r for r in rows}
            await _attach_files(conn, rows)
            return [by_id[i] for i in ids if i in by_id]
        return await self._run(q, write=False)

    # -- video index -----------------------------------------------------------------------------

    async def upsert_video(self, imei: str, name: str, size: int, sha256: str | None, complete: bool,
                           uploaded_at: dt.datetime | None) -> None:
        values = {"size": size, "sha256": sha256, "complete": complete, "uploaded_at": to_db(uploaded_at)}

        async def q(conn: AsyncConnection) -> None:
            updated = (await conn.execute(videos.update().where(videos.c.imei == imei, videos.c.name == name)
                                          .values(**values))).rowcount
            if not updated:
                await conn.execute(videos.insert().values(imei=imei, name=name, **values))
        try:
            await self._run(q)
        except IntegrityError:  # inserted concurrently: update instead
            await self._exec(videos.update().where(videos.c.imei == imei, videos.c.name == name).values(**values))

    async def get_video(self, imei: str, name: str) -> dict[str, Any] | None:
        return await self._one(sa.select(videos).where(videos.c.imei == imei, videos.c.name == name))

    async def delete_video(self, imei: str, name: str) -> None:
        await self._exec(videos.delete().where(videos.c.imei == imei, videos.c.name == name))

    async def list_videos(self, imei: str, limit: int, after_name: str | None = None) -> list[dict[str, Any]]:
        """Videos of one device by name (keyset: names strictly after ``after_name``), each with
        ``alarm_ids``: the alarms of that device naming the file, sorted."""

        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = sa.select(videos).where(videos.c.imei == imei)
            if after_name is not None:
                stmt = stmt.where(videos.c.name > after_name)
            rows = [_row(r) for r in (await conn.execute(stmt.order_by(videos.c.name).limit(limit))).all()]
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
        return await self._run(q, write=False)

    # -- commands --------------------------------------------------------------------------------

    async def create_command(self, imei: str, command: str, args: dict[str, Any], ttl_s: int,
                             created_by: str | None, now: dt.datetime) -> tuple[dict[str, Any], bool] | None:
        """Queue a command for a registered device, in one transaction: ``(command, queued_before)``,
        ``queued_before`` telling whether older unexpired commands of ``imei`` were waiting already;
        None when ``imei`` is not registered. The command is the row as inserted (not read back)."""
        row = {"id": str(uuid.uuid4()), "imei": imei, "command": command, "args": args, "status": "queued",
               "created_by": created_by, "created_at": to_db(now),
               "expires_at": to_db(now + dt.timedelta(seconds=ttl_s)), "sent_at": None, "finished_at": None,
               "detail": None}

        async def q(conn: AsyncConnection) -> tuple[dict[str, Any], bool] | None:
            registered, queued_before = (await conn.execute(_CREATE_COMMAND_CHECK,
                                                            {"imei": imei, "now": row["created_at"]})).one()
            if not registered:
                return None
            await conn.execute(commands.insert(), row)
            return _command_out(row), bool(queued_before)
        return await self._run(q)

    async def get_command(self, command_id: str) -> dict[str, Any] | None:
        return await self._one(sa.select(commands).where(commands.c.id == command_id))

    async def imeis_with_queued_commands(self) -> list[str]:
        async def q(conn: AsyncConnection) -> list[str]:
            return list((await conn.execute(sa.select(commands.c.imei).where(commands.c.status == "queued")
                                            .distinct())).scalars().all())
        return await self._run(q, write=False)

    async def queued_commands(self, imei: str, now: dt.datetime) -> list[dict[str, Any]]:
        """Commands waiting for ``imei`` that have not expired, oldest first."""
        return await self._all(sa.select(commands).where(
            commands.c.imei == imei, commands.c.status == "queued", commands.c.expires_at > to_db(now))
            .order_by(commands.c.created_at, commands.c.id))

    async def mark_command_sent(self, command_id: str, now: dt.datetime) -> bool:
        return await self._exec(commands.update().where(commands.c.id == command_id, commands.c.status == "queued")
                                .values(status="sent", sent_at=to_db(now))) > 0

    async def finish_command(self, imei: str, command_id: str, ok: bool, detail: str | None,
                             now: dt.datetime) -> tuple[dict[str, Any] | None, bool]:
        """Move a sent command of ``imei`` to succeeded/failed, in one transaction: ``(command, changed)``.
        ``command`` is None when there is no such command of this device; ``changed`` is False when it
        was not in a state a result can finish (a repeated result changes nothing)."""
        values = {"status": "succeeded" if ok else "failed", "finished_at": to_db(now), "detail": detail}

        async def q(conn: AsyncConnection) -> tuple[dict[str, Any] | None, bool]:
            found = (await conn.execute(sa.select(commands).where(commands.c.id == command_id).with_for_update())).first()
            if found is None or found.imei != imei:
                return None, False
            cmd = _row(found)
            if cmd["status"] not in ("sent", "queued"):
                return cmd, False
            changed = (await conn.execute(commands.update().where(
                commands.c.id == command_id, commands.c.status.in_(("sent", "queued"))).values(**values))).rowcount
            if not changed:  # not reachable while the row is locked; read what is there
                return _row((await conn.execute(sa.select(commands).where(commands.c.id == command_id))).one()), False
            cmd.update(status=values["status"], finished_at=from_db(values["finished_at"]), detail=detail)
            return cmd, True
        return await self._run(q)

    async def expire_commands(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Mark every queued command past its TTL ``expired``; returns them."""
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            due = [_row(r) for r in (await conn.execute(sa.select(commands).where(
                commands.c.status == "queued", commands.c.expires_at <= to_db(now)))).all()]
            if due:
                await conn.execute(commands.update().where(
                    commands.c.id.in_([d["id"] for d in due]), commands.c.status == "queued")
                    .values(status="expired", finished_at=to_db(now)))
                for d in due:
                    d.update(status="expired", finished_at=now)
            return due
        return await self._run(q)

    # -- admin plane: users, device list, alarm search and lifecycle (used by AdminService) -------

    async def list_users(self) -> list[dict[str, Any]]:
        return await self._all(sa.select(users.c.username, users.c.role, users.c.created_at)
                               .order_by(users.c.username))

    async def delete_user(self, username: str) -> str:
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
        return await self._run(q)

    async def list_devices(self, limit: int, after_imei: str | None = None) -> list[dict[str, Any]]:
        """Devices ordered by IMEI, strictly after ``after_imei`` (keyset)."""
        stmt = (sa.select(devices.c.imei, devices.c.name, devices.c.enabled, devices.c.created_at,
                          devices.c.last_seen).order_by(devices.c.imei).limit(limit))
        if after_imei is not None:
            stmt = stmt.where(devices.c.imei > after_imei)
        return await self._all(stmt)

    async def search_alarms(self, *, imeis: Sequence[str] = (), types: Sequence[str] = (),
                            statuses: Sequence[str] = (), since: dt.datetime | None = None,
                            until: dt.datetime | None = None,
                            bbox: tuple[float, float, float, float] | None = None,
                            has_video: bool | None = None, before: tuple[dt.datetime, str] | None = None,
                            limit: int = 100) -> list[dict[str, Any]]:
        """Alarms matching every given filter, newest first (``ts DESC, id DESC``), strictly before the
        keyset ``before = (ts, id)``; each with its files and whether each file's video has arrived.
        ``since <= ts < until``; ``bbox = (min_lon, min_lat, max_lon, max_lat)``, crossing the
        antimeridian when ``min_lon > max_lon``; ``has_video``: at least one file's video is complete."""
        cond: list[Any] = []
        if imeis:
            cond.append(alarms.c.imei.in_(list(imeis)))
        if types:
            cond.append(alarms.c.type.in_(list(types)))
        if statuses:
            cond.append(alarms.c.status.in_(list(statuses)))
        if since is not None:
            cond.append(alarms.c.ts >= to_db(since))
        if until is not None:
            cond.append(alarms.c.ts < to_db(until))
        if bbox is not None:
            min_lon, min_lat, max_lon, max_lat = bbox
            cond.append(alarms.c.lat.between(min_lat, max_lat))
            if min_lon <= max_lon:
                cond.append(alarms.c.lon.between(min_lon, max_lon))
            else:
                cond.append(sa.or_(alarms.c.lon >= min_lon, alarms.c.lon <= max_lon))
        if has_video is not None:
            arrived = sa.exists().where(
                alarm_files.c.alarm_id == alarms.c.id, videos.c.imei == alarm_files.c.imei,
                videos.c.name == alarm_files.c.name, videos.c.complete == sa.true())
            cond.append(arrived if has_video else sa.not_(arrived))
        if before is not None:
            ts, last_id = to_db(before[0]), before[1]
            cond.append(sa.or_(alarms.c.ts < ts, sa.and_(alarms.c.ts == ts, alarms.c.id < last_id)))
        stmt = (sa.select(alarms).where(sa.and_(sa.true(), *cond))
                .order_by(alarms.c.ts.desc(), alarms.c.id.desc()).limit(limit))

        # one keyset query for the page's rows and one for their files, on one connection (the
        # second sees the same snapshot on MariaDB; on SQLite both run in one read transaction)
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = _alarm_rows(await conn.execute(stmt))
            await _attach_files(conn, rows)
            return rows
        return await self._run(q, write=False)

    async def ack_alarm(self, alarm_id: str, by: str, note: str | None, now: dt.datetime) -> bool:
        """``active -> acknowledged``; False when the alarm is missing or not active (concurrency-safe:
        the state check is part of the UPDATE)."""
        return await self._exec(alarms.update().where(alarms.c.id == alarm_id, alarms.c.status == "active")
                                .values(status="acknowledged", acknowledged_by=by, acknowledged_at=to_db(now),
                                        ack_note=note)) > 0

    async def clear_alarm(self, alarm_id: str, by: str, now: dt.datetime) -> bool:
        """``active|acknowledged -> cleared``; False when the alarm is missing or cleared already."""
        return await self._exec(alarms.update().where(alarms.c.id == alarm_id,
                                                      alarms.c.status.in_(("active", "acknowledged")))
                                .values(status="cleared", cleared_by=by, cleared_at=to_db(now))) > 0


#: before a command is queued: is the device registered, and are older unexpired commands waiting?
_CREATE_COMMAND_CHECK = sa.select(
    sa.exists().where(devices.c.imei == sa.bindparam("imei")),
    sa.exists().where(commands.c.imei == sa.bindparam("imei"), commands.c.status == "queued",
                      commands.c.expires_at > sa.bindparam("now", type_=commands.c.expires_at.type)))


def _command_out(row: dict[str, Any]) -> dict[str, Any]:
    """A command row as written, in the form :meth:`SqlStore.get_command` returns it."""
    return {k: from_db(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


#: the files of a page of alarms and whether each file's video has arrived (complete in the index)
_ALARM_FILES = (
    sa.select(alarm_files.c.alarm_id, alarm_files.c.name,
              sa.func.coalesce(videos.c.complete, False).label("arrived"))
    .select_from(alarm_files.outerjoin(videos, sa.and_(videos.c.imei == alarm_files.c.imei,
                                                       videos.c.name == alarm_files.c.name)))
    .where(alarm_files.c.alarm_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(alarm_files.c.alarm_id, alarm_files.c.name))


_ALARM_TIMES = tuple(c.name for c in alarms.c if isinstance(c.type, sa.DateTime))


def _alarm_rows(result: Any) -> list[dict[str, Any]]:
    """:func:`_row` for a page of alarms (the time columns are known: no per-value type test)."""
    keys = tuple(result.keys())
    times = [k for k in _ALARM_TIMES if k in keys]
    rows = []
    for values in result.all():
        row = dict(zip(keys, values))
        for k in times:
            if row[k] is not None:
                row[k] = from_db(row[k])
        rows.append(row)
    return rows


async def _attach_files(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Set ``files: [{name, arrived}]`` (by name) on each alarm row, with one query on ``conn``."""
    if not rows:
        return
    files: dict[str, list[dict[str, Any]]] = {}
    for alarm_id, name, arrived in (await conn.execute(_ALARM_FILES, {"ids": [r["id"] for r in rows]})).all():
        files.setdefault(alarm_id, []).append({"name": name, "arrived": bool(arrived)})
    for r in rows:
        r["files"] = files.get(r["id"], [])


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # the driver's own transaction handling starts a transaction only before DML, so a read-then-write
    # (SELECT ... FOR UPDATE, then DELETE) would not be isolated; SQLAlchemy emits BEGIN itself instead
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("truckx_write") else "BEGIN")
