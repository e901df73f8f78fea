"""Location time series in an SQLite file (the embedded default).

``locations`` is a ``WITHOUT ROWID`` table keyed on ``(imei, ts)``; ``INSERT OR IGNORE`` makes a resent
point a no-op, so duplicates never exist in storage. ``latest`` holds each device's newest point so that
the fleet overview reads one row per device. Times are integer microseconds since the epoch.
One aiosqlite connection (its own thread) does the writes, so the event loop never blocks on disk.
Retention deletes through it too, a bounded batch per write, so a flush waits for one batch at most. A
second connection (its own thread) does what must not queue behind or ahead of the writes: the counts of
``stats`` (a scan of the table, which WAL lets read beside the writer), and, after each retention batch,
a passive checkpoint that copies the deleted pages back into the database file, so that this work does
not fall to the commits of the next location batches (the writer checkpoints at commit once the WAL
holds 1000 pages).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import aiosqlite

from .. import privacy
from ..errors import Unavailable
from ..models import LocationPoint
from .base import from_us, to_us

SCHEMA = """
CREATE TABLE IF NOT EXISTS locations (
    imei TEXT NOT NULL, ts INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
    speed_kmh REAL, heading REAL, alt_m REAL, accuracy_m REAL,
    PRIMARY KEY (imei, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (
    imei TEXT PRIMARY KEY, ts INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
    speed_kmh REAL, heading REAL, alt_m REAL, accuracy_m REAL
) WITHOUT ROWID;
"""

_INSERT = "INSERT OR IGNORE INTO locations VALUES (?,?,?,?,?,?,?,?)"
_LATEST = """
INSERT INTO latest VALUES (?,?,?,?,?,?,?,?)
ON CONFLICT(imei) DO UPDATE SET ts=excluded.ts, lat=excluded.lat, lon=excluded.lon,
    speed_kmh=excluded.speed_kmh, heading=excluded.heading, alt_m=excluded.alt_m, accuracy_m=excluded.accuracy_m
WHERE excluded.ts > latest.ts
"""


def _row(p: LocationPoint) -> tuple:
    return (p.imei, to_us(p.ts), p.lat, p.lon, p.speed_kmh, p.heading, p.alt_m, p.accuracy_m)


def _write_batch(conn: sqlite3.Connection, points: Sequence[LocationPoint]) -> None:
    """On the connection's thread: insert the points, move each device's newest into ``latest``, commit;
    on any error roll back (the batcher retries the whole batch)."""
    rows = [_row(p) for p in points]
    newest: dict[str, tuple] = {}
    for r in rows:
        if r[0] not in newest or r[1] > newest[r[0]][1]:
            newest[r[0]] = r
    try:
        conn.executemany(_INSERT, rows)
        conn.executemany(_LATEST, list(newest.values()))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _point(r: Sequence) -> LocationPoint:
    return LocationPoint(imei=r[0], ts=from_us(r[1]), lat=r[2], lon=r[3], speed_kmh=r[4], heading=r[5],
                         alt_m=r[6], accuracy_m=r[7])


def path_from_url(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not an sqlite URL: {url!r}")
    return Path(url[len("sqlite:///"):])


class SqliteLocationStore:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.path = path_from_url(url)
        self.timeout_s = timeout_s
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        #: opened on first use: long reads and checkpoints that must not queue behind (or ahead of) writes
        self._side: aiosqlite.Connection | None = None

    async def open(self) -> None:
        privacy.private_file(self.path)  # before SQLite creates it (its journals take the file's mode)
        self._db = await aiosqlite.connect(self.path, timeout=self.timeout_s)
        await self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: every group commit is fsynced before its points are acknowledged, so an ack survives an
        # OS crash or power loss (NORMAL in WAL mode may lose the last commits then)
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    async def close(self) -> None:
        if self._side is not None:
            await self._side.close()
            self._side = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise Unavailable("location store is not open")
        return self._db

    async def ping(self) -> None:
        async with asyncio.timeout(self.timeout_s):
            await (await self.db.execute("SELECT 1")).fetchone()

    async def write(self, points: Sequence[LocationPoint]) -> None:
        if not points:
            return
        db = self.db
        async with self._lock:
            # one hop to the connection's thread for the whole batch (rows, both statements, the
            # commit), instead of one per call and a Cursor each: aiosqlite's own way of running a
            # function on its thread (every public call of it goes through _execute)
            await db._execute(_write_batch, db._conn, points)

    async def track(self, imei: str, since: dt.datetime | None, until: dt.datetime | None,
                    limit: int, after: dt.datetime | None = None) -> list[LocationPoint]:
        sql = "SELECT * FROM locations WHERE imei = ?"
        args: list = [imei]
        if since is not None:
            sql += " AND ts >= ?"
            args.append(to_us(since))
        if until is not None:
            sql += " AND ts < ?"
            args.append(to_us(until))
        if after is not None:
            sql += " AND ts > ?"
            args.append(to_us(after))
        sql += " ORDER BY ts LIMIT ?"
        args.append(limit)
        async with self.db.execute(sql, args) as cur:
            return [_point(r) for r in await cur.fetchall()]

    async def latest(self, imeis: Sequence[str] | None = None) -> list[LocationPoint]:
        if imeis is not None and not imeis:
            return []
        sql, args = "SELECT * FROM latest", []
        if imeis:
            sql += " WHERE imei IN (%s)" % ",".join("?" * len(imeis))
            args = list(imeis)
        async with self.db.execute(sql + " ORDER BY imei", args) as cur:
            return [_point(r) for r in await cur.fetchall()]

    async def devices(self) -> list[str]:
        async with self.db.execute("SELECT imei FROM latest ORDER BY imei") as cur:
            return [r[0] for r in await cur.fetchall()]

    async def delete_before(self, imei: str, before: dt.datetime, limit: int) -> int:
        cutoff = to_us(before)
        async with self._lock:
            try:
                cur = await self.db.execute(
                    "DELETE FROM locations WHERE imei = ? AND ts IN "
                    "(SELECT ts FROM locations WHERE imei = ? AND ts < ? ORDER BY ts LIMIT ?)",
                    (imei, imei, cutoff, limit))
                removed = cur.rowcount
                await cur.close()
                await self.db.commit()
            except BaseException:
                await self.db.rollback()
                raise
        if removed > 0:
            await (await self._side_connection()).execute("PRAGMA wal_checkpoint(PASSIVE)")
        return max(0, removed)

    async def _side_connection(self) -> aiosqlite.Connection:
        if self._side is None:
            self._side = await aiosqlite.connect(self.path, timeout=self.timeout_s)
        return self._side

    async def stats(self) -> dict[str, Any]:
        reader = await self._side_connection()
        async with reader.execute("SELECT COUNT(*) FROM locations") as cur:
            count = (await cur.fetchone())[0]  # type: ignore[index]
        oldest: int | None = None
        async with reader.execute("SELECT imei FROM latest") as cur:
            imeis = [r[0] for r in await cur.fetchall()]
        for imei in imeis:  # one index seek per device: the key is (imei, ts), so MIN(ts) alone would scan
            async with reader.execute("SELECT MIN(ts) FROM locations WHERE imei = ?", (imei,)) as cur:
                first = (await cur.fetchone())[0]  # type: ignore[index]
            if first is not None and (oldest is None or first < oldest):
                oldest = first
        size: int | None
        try:
            async with reader.execute("SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                                      "('locations', 'sqlite_autoindex_locations_1')") as cur:
                size = (await cur.fetchone())[0]  # type: ignore[index]
        except aiosqlite.OperationalError:  # dbstat not compiled in: the file's used pages
            async with reader.execute("SELECT (page_count - freelist_count) * page_size "
                                      "FROM pragma_page_count, pragma_freelist_count, pragma_page_size") as cur:
                size = (await cur.fetchone())[0]  # type: ignore[index]
        return {"count": int(count), "bytes": int(size or 0), "oldest": from_us(oldest) if oldest is not None else None}
